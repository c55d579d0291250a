// Command jsonget prints one value of the JSON document on stdin, for scripts that must not
// depend on jq: `jsonget .a.b.c` prints a string raw, null or a missing member as an empty
// line, anything else as compact JSON. Exit 1 when stdin is not JSON.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

func main() {
	if len(os.Args) != 2 || !strings.HasPrefix(os.Args[1], ".") {
		fmt.Fprintln(os.Stderr, "usage: jsonget .path.to.member < doc.json")
		os.Exit(2)
	}
	var v any
	if err := json.NewDecoder(os.Stdin).Decode(&v); err != nil {
		fmt.Fprintln(os.Stderr, "jsonget:", err)
		os.Exit(1)
	}
	for _, k := range strings.Split(strings.TrimPrefix(os.Args[1], "."), ".") {
		if k == "" {
			continue
		}
		m, ok := v.(map[string]any)
		if !ok {
			v = nil
			break
		}
		v = m[k]
	}
	switch x := v.(type) {
	case nil:
		fmt.Println()
	case string:
		fmt.Println(x)
	default:
		b, _ := json.Marshal(x)
		fmt.Println(string(b))
	}
}
