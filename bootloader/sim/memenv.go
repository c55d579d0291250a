package sim

import (
	"errors"
	"maps"
	"sync"
)

// ErrWriteFailed is returned by MemEnv.Update after FailWrites.
var ErrWriteFailed = errors.New("sim: environment write failed")

// MemEnv is an in-memory bootloader.EnvStore that counts its writes: each Update is one
// atomic transaction, as a redundant U-Boot environment copy is.
type MemEnv struct {
	mu     sync.Mutex
	vars   map[string]string
	writes int
	fail   int // fail the next fail writes
}

// NewMemEnv returns an environment holding vars.
func NewMemEnv(vars map[string]string) *MemEnv {
	m := &MemEnv{vars: map[string]string{}}
	maps.Copy(m.vars, vars)
	return m
}

// Vars returns a copy of the variables.
func (m *MemEnv) Vars() (map[string]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.vars), nil
}

// Update sets and deletes variables in one step, or changes nothing when it fails.
func (m *MemEnv) Update(set map[string]string, unset []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail > 0 {
		m.fail--
		return ErrWriteFailed
	}
	for _, k := range unset {
		delete(m.vars, k)
	}
	maps.Copy(m.vars, set)
	m.writes++
	return nil
}

// Writes counts the successful Updates.
func (m *MemEnv) Writes() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.writes
}

// FailWrites makes the next n Updates fail without changing anything.
func (m *MemEnv) FailWrites(n int) {
	m.mu.Lock()
	m.fail = n
	m.mu.Unlock()
}
