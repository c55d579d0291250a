package hub

import (
	"encoding/json"
	"testing"
)

// MergePatch is RFC 7386 on decoded objects: null deletes, objects merge (replacing a
// non-object), anything else replaces.
func TestMergePatch(t *testing.T) {
	for _, c := range []struct{ doc, patch, want string }{
		{`{"a":1,"b":{"c":2,"d":3}}`, `{"a":null,"b":{"c":null,"e":[1]}}`, `{"b":{"d":3,"e":[1]}}`},
		{`{"a":"x"}`, `{"a":{"b":{"c":null,"d":1}}}`, `{"a":{"b":{"d":1}}}`},
		{`{"a":{"b":1}}`, `{"a":[1,{"c":null}]}`, `{"a":[1,{"c":null}]}`},
		{`{}`, `{"gone":null}`, `{}`},
	} {
		var doc, patch map[string]any
		if err := json.Unmarshal([]byte(c.doc), &doc); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(c.patch), &patch); err != nil {
			t.Fatal(err)
		}
		MergePatch(doc, patch)
		if got, _ := json.Marshal(doc); string(got) != c.want {
			t.Errorf("MergePatch(%s, %s) = %s, want %s", c.doc, c.patch, got, c.want)
		}
	}
}
