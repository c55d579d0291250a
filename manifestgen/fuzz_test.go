package manifestgen

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzValidate: Validate never panics, every violation has a path and a message, and a
// manifest it accepts parses and re-encodes into a manifest it accepts again.
func FuzzValidate(f *testing.F) {
	f.Add([]byte(validManifest))
	f.Fuzz(func(t *testing.T, data []byte) {
		vs := Validate(data)
		for _, v := range vs {
			if !strings.HasPrefix(v.Path, "$") || v.Message == "" {
				t.Fatalf("bad violation %+v", v)
			}
		}
		if len(vs) > 0 {
			if _, err := Parse(data); err == nil {
				t.Fatal("Parse accepted what Validate rejected")
			}
			return
		}
		m, err := Parse(data)
		if err != nil {
			t.Fatalf("Validate accepted, Parse failed: %v", err)
		}
		out, err := Marshal(m)
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		if vs := Validate(out); vs != nil {
			t.Fatalf("re-encoded manifest invalid: %v\n%s", vs, out)
		}
		m2, err := Parse(out)
		if err != nil {
			t.Fatal(err)
		}
		out2, _ := Marshal(m2)
		if !bytes.Equal(out, out2) {
			t.Fatalf("Marshal not stable:\n%s\n%s", out, out2)
		}
	})
}

// FuzzSplitKV: the k=v splitter and the flag parsers never panic; SplitTopLevel's parts
// join back to the input; SplitKV's items have keys and values; a parsed step is either
// inline or reference.
func FuzzSplitKV(f *testing.F) {
	f.Add(`handler=microsoft/script:1,files=a.sh;b.sh,properties={"a":"b,c"},description="x, y"`)
	f.Fuzz(func(t *testing.T, s string) {
		if parts, err := SplitTopLevel(s); err == nil {
			if strings.Join(parts, ",") != s {
				t.Fatalf("parts %q do not join to %q", parts, s)
			}
		}
		if items, err := SplitKV(s); err == nil {
			for _, it := range items {
				if it.Key == "" || it.Value == "" || strings.Contains(it.Key, "=") {
					t.Fatalf("bad item %q from %q", it, s)
				}
			}
		}
		if st, err := ParseStep(s); err == nil {
			if (st.Handler != "") == (st.UpdateID != nil) {
				t.Fatalf("step is neither or both inline and reference: %+v", st)
			}
			for _, f := range st.Files {
				if f == "" {
					t.Fatal("empty step file name")
				}
			}
		}
		if fs, err := ParseFile(s); err == nil && fs.Path == "" {
			t.Fatal("empty file path")
		}
		if rs, err := ParseRelatedFile(s); err == nil && rs.Path == "" {
			t.Fatal("empty related file path")
		}
		if c, err := ParseCompat(s); err == nil && len(c) == 0 {
			t.Fatal("empty compatibility")
		}
	})
}
