// Package enumname gives the small integer enums of the module their String methods: a
// table of names indexed by value, and the type's name with the number for any value the
// table does not name.
package enumname

import "fmt"

// Name returns names[v], or typ(v) (e.g. "SwapType(9)") when v is outside names or its
// entry is empty.
func Name[T ~int | ~uint8](v T, typ string, names []string) string {
	if i := int(v); i >= 0 && i < len(names) && names[i] != "" {
		return names[i]
	}
	return fmt.Sprintf("%s(%d)", typ, int(v))
}
