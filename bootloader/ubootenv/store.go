package ubootenv

import "sort"

// Vars reads both copies again and returns the current variables: the view the bootloader
// state model (package bootloader's EnvStore) works on.
func (e *Env) Vars() (map[string]string, error) {
	if err := e.Reload(); err != nil {
		return nil, err
	}
	m := make(map[string]string, len(e.vars))
	for _, v := range e.vars {
		m[v.Name] = v.Value
	}
	return m, nil
}

// Update sets and deletes variables in one transaction (one copy written), the write side of
// package bootloader's EnvStore. Names are applied in sorted order, so the result does not
// depend on map iteration.
func (e *Env) Update(set map[string]string, unset []string) error {
	changes := make([]Change, 0, len(set)+len(unset))
	for _, n := range unset {
		if _, ok := set[n]; !ok {
			changes = append(changes, Change{Name: n})
		}
	}
	for n, v := range set {
		changes = append(changes, Change{Name: n, Value: v})
	}
	sort.Slice(changes, func(i, j int) bool { return changes[i].Name < changes[j].Name })
	return e.Set(changes...)
}
