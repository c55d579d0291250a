package hub

import (
	"maps"
	"slices"
	"sync"
)

// observers holds the functions registered to hear of one kind of event (OnReported,
// onRemoved). The zero value is empty and ready.
type observers[F any] struct {
	mu   sync.Mutex
	fns  map[int]F
	next int
}

// add registers fn; the returned func unregisters it.
func (o *observers[F]) add(fn F) (remove func()) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.fns == nil {
		o.fns = map[int]F{}
	}
	n := o.next
	o.next++
	o.fns[n] = fn
	return func() {
		o.mu.Lock()
		delete(o.fns, n)
		o.mu.Unlock()
	}
}

// list returns the registered functions, to be called without the lock held.
func (o *observers[F]) list() []F {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Collect(maps.Values(o.fns))
}
