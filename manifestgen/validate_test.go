package manifestgen

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// validManifest uses every part of the format, each within its limits.
const validManifest = `{
  "$schema": "https://json.schemastore.org/azure-deviceupdate-import-manifest-5.0.json",
  "updateId": {"provider": "Contoso", "name": "Toaster", "version": "1.0.2"},
  "isDeployable": true,
  "description": "Toaster firmware",
  "compatibility": [{"manufacturer": "Contoso", "model": "Toaster"}],
  "instructions": {
    "steps": [
      {"type": "inline", "description": "install", "handler": "microsoft/swupdate:1",
       "files": ["fw.swu"], "handlerProperties": {"installedCriteria": "1.0.2"}},
      {"type": "reference", "description": "bootloader",
       "updateId": {"provider": "Contoso", "name": "Toaster.Boot", "version": "2.0"}}
    ]
  },
  "files": [
    {
      "filename": "fw.swu",
      "sizeInBytes": 1024,
      "hashes": {"sha256": "LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ="},
      "properties": {"k": "v"},
      "relatedFiles": [
        {
          "filename": "delta.bin",
          "sizeInBytes": 10,
          "hashes": {"sha256": "T0qUEP/N+JXErbiAZZ6bXA3R8joweQaENAs+qssEU5g="},
          "properties": {"microsoft.sourceFileHashAlgorithm": "sha256", "microsoft.sourceFileHash": "KZABho+4wC/UMcM2xtBY9VWMXf9bWvXm/gS4cKapy7o="}
        }
      ],
      "downloadHandler": {"id": "microsoft/delta:1"}
    }
  ],
  "createdDateTime": "2022-01-19T06:23:52.6996916Z",
  "manifestVersion": "5.0"
}`

func TestValidManifestAndExamplesPass(t *testing.T) {
	if vs := Validate([]byte(validManifest)); vs != nil {
		t.Fatalf("valid manifest: %v", vs)
	}
	files, _ := filepath.Glob("testdata/examples/*.json")
	if len(files) < 5 {
		t.Fatalf("examples missing: %v", files)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if vs := Validate(data); vs != nil {
			t.Errorf("%s: %v", f, vs)
		}
		if _, err := Parse(data); err != nil {
			t.Errorf("%s: Parse: %v", f, err)
		}
	}
}

// del removes the member at a path in mutate.
type delT struct{}

var del = delT{}

// raw is inserted as literal JSON text (for numbers like 1e3 that any() would rewrite).
type raw string

func (r raw) MarshalJSON() ([]byte, error) { return []byte(r), nil }

var pathToken = regexp.MustCompile(`^(?:\.([A-Za-z_$][A-Za-z0-9_$]*)|\['([^']*)'\]|\[(\d+)\])`)

// mutate sets (or, with del, removes) the value at a JSON path like $.files[0].hashes['x'].
func mutate(t *testing.T, doc any, path string, v any) any {
	t.Helper()
	if path == "$" {
		return v
	}
	rest := strings.TrimPrefix(path, "$")
	var setIn func(cur any, rest string) any
	setIn = func(cur any, rest string) any {
		m := pathToken.FindStringSubmatch(rest)
		if m == nil {
			t.Fatalf("bad path %q at %q", path, rest)
		}
		rest = rest[len(m[0]):]
		if m[3] != "" {
			i, _ := strconv.Atoi(m[3])
			a := cur.([]any)
			if rest == "" {
				if v == del {
					return slices.Delete(a, i, i+1)
				}
				if i == len(a) {
					return append(a, v)
				}
				a[i] = v
				return a
			}
			a[i] = setIn(a[i], rest)
			return a
		}
		name := m[1] + m[2]
		o := cur.(map[string]any)
		if rest == "" {
			if v == del {
				delete(o, name)
			} else {
				o[name] = v
			}
			return o
		}
		o[name] = setIn(o[name], rest)
		return o
	}
	return setIn(doc, rest)
}

func decodeAny(t *testing.T, s string) any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

func b64(n int) string { return base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, n)) }

func fileObj(name string, size int64) map[string]any {
	return map[string]any{"filename": name, "sizeInBytes": size, "hashes": map[string]any{"sha256": b64(32)}}
}

func compatN(n int) map[string]any {
	o := map[string]any{}
	for i := range n {
		o[fmt.Sprintf("p%d", i)] = "v"
	}
	return o
}

func repeatList(v any, n int) []any {
	out := make([]any, n)
	for i := range out {
		out[i] = v
	}
	return out
}

type mut struct {
	path string
	v    any
}

// TestValidationLimits mutates the valid manifest, one rule per case, and checks the exact
// set of paths reported.
func TestValidationLimits(t *testing.T) {
	s := strings.Repeat
	refStep := map[string]any{"type": "reference", "updateId": map[string]any{"provider": "C", "name": "N", "version": "1.0"}}
	tenFiles := []any{}
	for i := range 11 {
		tenFiles = append(tenFiles, fileObj(fmt.Sprintf("f%d", i), 1))
	}
	cases := []struct {
		name string
		muts []mut
		want []string // nil: valid
	}{
		// updateId
		{"provider empty", []mut{{"$.updateId.provider", ""}}, []string{"$.updateId.provider"}},
		{"provider 64", []mut{{"$.updateId.provider", s("a", 64)}}, nil},
		{"provider 65", []mut{{"$.updateId.provider", s("a", 65)}}, []string{"$.updateId.provider"}},
		{"provider pattern", []mut{{"$.updateId.provider", "Con toso"}}, []string{"$.updateId.provider"}},
		{"provider number", []mut{{"$.updateId.provider", 7}}, []string{"$.updateId.provider"}},
		{"provider missing", []mut{{"$.updateId.provider", del}}, []string{"$.updateId.provider"}},
		{"name pattern", []mut{{"$.updateId.name", "a_b"}}, []string{"$.updateId.name"}},
		{"name 65", []mut{{"$.updateId.name", s("b", 65)}}, []string{"$.updateId.name"}},
		{"name dots dashes", []mut{{"$.updateId.name", "a.b-C9"}}, nil},
		{"version one part", []mut{{"$.updateId.version", "1"}}, []string{"$.updateId.version"}},
		{"version four parts", []mut{{"$.updateId.version", "1.2.3.4"}}, nil},
		{"version five parts", []mut{{"$.updateId.version", "1.2.3.4.5"}}, []string{"$.updateId.version"}},
		{"version max part", []mut{{"$.updateId.version", "2147483647.0"}}, nil},
		{"version leading zeros", []mut{{"$.updateId.version", "0002147483647.01"}}, nil},
		{"version part too big", []mut{{"$.updateId.version", "2147483648.0"}}, []string{"$.updateId.version"}},
		{"version letters", []mut{{"$.updateId.version", "v1.0"}}, []string{"$.updateId.version"}},
		{"version empty part", []mut{{"$.updateId.version", "1..2"}}, []string{"$.updateId.version"}},
		{"version number", []mut{{"$.updateId.version", 1.5}}, []string{"$.updateId.version"}},
		{"updateId unknown member", []mut{{"$.updateId.extra", "x"}}, []string{"$.updateId.extra"}},
		{"updateId not object", []mut{{"$.updateId", "Contoso.Toaster.1.0"}}, []string{"$.updateId"}},
		{"updateId missing", []mut{{"$.updateId", del}}, []string{"$.updateId"}},
		// top level
		{"description empty", []mut{{"$.description", ""}}, []string{"$.description"}},
		{"description 512", []mut{{"$.description", s("d", 512)}}, nil},
		{"description 512 non-ASCII", []mut{{"$.description", s("é", 512)}}, nil},
		{"description 513", []mut{{"$.description", s("d", 513)}}, []string{"$.description"}},
		{"description number", []mut{{"$.description", 1}}, []string{"$.description"}},
		{"isDeployable false", []mut{{"$.isDeployable", false}}, nil},
		{"isDeployable string", []mut{{"$.isDeployable", "false"}}, []string{"$.isDeployable"}},
		{"$schema number", []mut{{"$['$schema']", 1}}, []string{"$.$schema"}},
		{"unknown top-level", []mut{{"$.foo", 1}}, []string{"$.foo"}},
		{"manifestVersion 4.0", []mut{{"$.manifestVersion", "4.0"}}, []string{"$.manifestVersion"}},
		{"manifestVersion 5", []mut{{"$.manifestVersion", "5"}}, []string{"$.manifestVersion"}},
		{"manifestVersion number", []mut{{"$.manifestVersion", raw("5.0")}}, []string{"$.manifestVersion"}},
		{"manifestVersion missing", []mut{{"$.manifestVersion", del}}, []string{"$.manifestVersion"}},
		{"createdDateTime date only", []mut{{"$.createdDateTime", "2022-01-19"}}, []string{"$.createdDateTime"}},
		{"createdDateTime no fraction", []mut{{"$.createdDateTime", "2022-01-19T06:23:52Z"}}, nil},
		{"createdDateTime offset", []mut{{"$.createdDateTime", "2022-01-19T06:23:52+02:00"}}, nil},
		{"createdDateTime empty", []mut{{"$.createdDateTime", ""}}, []string{"$.createdDateTime"}},
		{"createdDateTime number", []mut{{"$.createdDateTime", 20220119}}, []string{"$.createdDateTime"}},
		{"createdDateTime missing", []mut{{"$.createdDateTime", del}}, []string{"$.createdDateTime"}},
		{"root array", []mut{{"$", []any{}}}, []string{"$"}},
		{"root string", []mut{{"$", "x"}}, []string{"$"}},
		// compatibility
		{"compat empty array", []mut{{"$.compatibility", []any{}}}, []string{"$.compatibility"}},
		{"compat 10", []mut{{"$.compatibility", repeatList(compatN(1), 10)}}, nil},
		{"compat 11", []mut{{"$.compatibility", repeatList(compatN(1), 11)}}, []string{"$.compatibility"}},
		{"compat object", []mut{{"$.compatibility", compatN(1)}}, []string{"$.compatibility"}},
		{"compat missing", []mut{{"$.compatibility", del}}, []string{"$.compatibility"}},
		{"compat item empty", []mut{{"$.compatibility[0]", map[string]any{}}}, []string{"$.compatibility[0]"}},
		{"compat item string", []mut{{"$.compatibility[0]", "x"}}, []string{"$.compatibility[0]"}},
		{"compat 5 properties", []mut{{"$.compatibility[0]", compatN(5)}}, nil},
		{"compat 6 properties", []mut{{"$.compatibility[0]", compatN(6)}}, []string{"$.compatibility[0]"}},
		{"compat name 32", []mut{{"$.compatibility[0]." + s("n", 32), "v"}}, nil},
		{"compat name 33", []mut{{"$.compatibility[0]." + s("n", 33), "v"}}, []string{"$.compatibility[0]." + s("n", 33)}},
		{"compat name empty", []mut{{"$.compatibility[0]['']", "v"}}, []string{"$.compatibility[0]['']"}},
		{"compat value 64", []mut{{"$.compatibility[0].model", s("m", 64)}}, nil},
		{"compat value 65", []mut{{"$.compatibility[0].model", s("m", 65)}}, []string{"$.compatibility[0].model"}},
		{"compat value empty", []mut{{"$.compatibility[0].model", ""}}, []string{"$.compatibility[0].model"}},
		{"compat value number", []mut{{"$.compatibility[0].model", 3}}, []string{"$.compatibility[0].model"}},
		{"compat name with space", []mut{{"$.compatibility[0]['device model']", 3}}, []string{"$.compatibility[0]['device model']"}},
		// instructions
		{"instructions missing", []mut{{"$.instructions", del}}, []string{"$.instructions"}},
		{"instructions array", []mut{{"$.instructions", []any{}}}, []string{"$.instructions"}},
		{"instructions unknown", []mut{{"$.instructions.extra", 1}}, []string{"$.instructions.extra"}},
		{"steps missing", []mut{{"$.instructions.steps", del}}, []string{"$.instructions.steps"}},
		{"steps empty", []mut{{"$.instructions.steps", []any{}}}, []string{"$.instructions.steps"}},
		{"steps 10", []mut{{"$.instructions.steps", repeatList(refStep, 10)}}, nil},
		{"steps 11", []mut{{"$.instructions.steps", repeatList(refStep, 11)}}, []string{"$.instructions.steps"}},
		{"step not object", []mut{{"$.instructions.steps[0]", "x"}}, []string{"$.instructions.steps[0]"}},
		// inline step
		{"inline type absent", []mut{{"$.instructions.steps[0].type", del}}, nil},
		{"inline type bad", []mut{{"$.instructions.steps[0].type", "script"}}, []string{"$.instructions.steps[0].type"}},
		{"inline type number", []mut{{"$.instructions.steps[0].type", 1}}, []string{"$.instructions.steps[0].type"}},
		{"handler short", []mut{{"$.instructions.steps[0].handler", "a/:1"}}, []string{"$.instructions.steps[0].handler", "$.instructions.steps[0].handler"}},
		{"handler 5", []mut{{"$.instructions.steps[0].handler", "a/b:1"}}, nil},
		{"handler 32", []mut{{"$.instructions.steps[0].handler", "microsoft/" + s("x", 20) + ":1"}}, nil},
		{"handler 33", []mut{{"$.instructions.steps[0].handler", "microsoft/" + s("x", 21) + ":1"}}, []string{"$.instructions.steps[0].handler"}},
		{"handler 6 digits", []mut{{"$.instructions.steps[0].handler", "microsoft/x:123456"}}, []string{"$.instructions.steps[0].handler"}},
		{"handler no version", []mut{{"$.instructions.steps[0].handler", "microsoft/swupdate"}}, []string{"$.instructions.steps[0].handler"}},
		{"handler space", []mut{{"$.instructions.steps[0].handler", "micro soft/x:1"}}, []string{"$.instructions.steps[0].handler"}},
		{"handler missing", []mut{{"$.instructions.steps[0].handler", del}}, []string{"$.instructions.steps[0].handler"}},
		{"step description 64", []mut{{"$.instructions.steps[0].description", s("d", 64)}}, nil},
		{"step description 65", []mut{{"$.instructions.steps[0].description", s("d", 65)}}, []string{"$.instructions.steps[0].description"}},
		{"step description empty", []mut{{"$.instructions.steps[0].description", ""}}, []string{"$.instructions.steps[0].description"}},
		{"step files missing", []mut{{"$.instructions.steps[0].files", del}}, []string{"$.instructions.steps[0].files"}},
		{"step files empty", []mut{{"$.instructions.steps[0].files", []any{}}}, []string{"$.instructions.steps[0].files"}},
		{"step files 10", []mut{{"$.instructions.steps[0].files", repeatList("fw.swu", 10)}}, nil},
		{"step files 11", []mut{{"$.instructions.steps[0].files", repeatList("fw.swu", 11)}}, []string{"$.instructions.steps[0].files"}},
		{"step files string", []mut{{"$.instructions.steps[0].files", "fw.swu"}}, []string{"$.instructions.steps[0].files"}},
		{"step file unknown", []mut{{"$.instructions.steps[0].files[1]", "nope.bin"}}, []string{"$.instructions.steps[0].files[1]"}},
		{"step file related name", []mut{{"$.instructions.steps[0].files[0]", "delta.bin"}}, []string{"$.instructions.steps[0].files[0]"}},
		{"step file empty", []mut{{"$.instructions.steps[0].files[0]", ""}}, []string{"$.instructions.steps[0].files[0]"}},
		{"step file 256", []mut{{"$.instructions.steps[0].files[0]", s("f", 256)}}, []string{"$.instructions.steps[0].files[0]"}},
		{"step file number", []mut{{"$.instructions.steps[0].files[0]", 1}}, []string{"$.instructions.steps[0].files[0]"}},
		{"handlerProperties string", []mut{{"$.instructions.steps[0].handlerProperties", "x"}}, []string{"$.instructions.steps[0].handlerProperties"}},
		{"handlerProperties nested", []mut{{"$.instructions.steps[0].handlerProperties.deep", map[string]any{"a": []any{1, nil, true}}}}, nil},
		{"inline step with updateId", []mut{{"$.instructions.steps[0].updateId", map[string]any{}}}, []string{"$.instructions.steps[0].updateId"}},
		{"inline step unknown", []mut{{"$.instructions.steps[0].arguments", "x"}}, []string{"$.instructions.steps[0].arguments"}},
		// reference step
		{"reference type missing", []mut{{"$.instructions.steps[1].type", del}}, []string{"$.instructions.steps[1].type"}},
		{"reference with handler", []mut{{"$.instructions.steps[1].handler", "a/b:1"}}, []string{"$.instructions.steps[1].handler"}},
		{"reference with files", []mut{{"$.instructions.steps[1].files", []any{"fw.swu"}}}, []string{"$.instructions.steps[1].files"}},
		{"reference updateId missing", []mut{{"$.instructions.steps[1].updateId", del}}, []string{"$.instructions.steps[1].updateId"}},
		{"reference updateId bad version", []mut{{"$.instructions.steps[1].updateId.version", "2"}}, []string{"$.instructions.steps[1].updateId.version"}},
		{"reference updateId unknown", []mut{{"$.instructions.steps[1].updateId.x", "2"}}, []string{"$.instructions.steps[1].updateId.x"}},
		{"reference description 65", []mut{{"$.instructions.steps[1].description", s("d", 65)}}, []string{"$.instructions.steps[1].description"}},
		// files
		{"files null, reference only", []mut{{"$.files", nil}, {"$.instructions.steps", []any{refStep}}}, nil},
		{"files absent, reference only", []mut{{"$.files", del}, {"$.instructions.steps", []any{refStep}}}, nil},
		{"files empty, reference only", []mut{{"$.files", []any{}}, {"$.instructions.steps", []any{refStep}}}, nil},
		{"files object", []mut{{"$.files", map[string]any{}}}, []string{"$.files", "$.instructions.steps[0].files[0]"}},
		{"files 11", []mut{{"$.files", tenFiles}, {"$.instructions.steps", []any{refStep}}}, []string{"$.files"}},
		{"files 10", []mut{{"$.files", tenFiles[:10]}, {"$.instructions.steps", []any{refStep}}}, nil},
		{"file not object", []mut{{"$.files[1]", 1}}, []string{"$.files[1]"}},
		{"filename empty", []mut{{"$.files[0].filename", ""}}, []string{"$.files[0].filename", "$.instructions.steps[0].files[0]"}},
		{"filename 255", []mut{{"$.files[0].filename", s("f", 255)}, {"$.instructions.steps[0].files[0]", s("f", 255)}}, nil},
		{"filename 256", []mut{{"$.files[0].filename", s("f", 256)}, {"$.instructions.steps[0].files[0]", s("f", 256)}}, []string{"$.files[0].filename", "$.instructions.steps[0].files[0]"}},
		{"filename missing", []mut{{"$.files[0].filename", del}}, []string{"$.files[0].filename", "$.instructions.steps[0].files[0]"}},
		{"filename duplicate", []mut{{"$.files[1]", fileObj("fw.swu", 1)}}, []string{"$.files[1].filename"}},
		{"size 0", []mut{{"$.files[0].sizeInBytes", 0}}, []string{"$.files[0].sizeInBytes"}},
		{"size negative", []mut{{"$.files[0].sizeInBytes", -1}}, []string{"$.files[0].sizeInBytes"}},
		{"size 2 GiB", []mut{{"$.files[0].sizeInBytes", int64(2147483648) - 10}}, nil},
		{"size max", []mut{{"$.files[0].sizeInBytes", int64(2147483648)}, {"$.files[0].relatedFiles", []any{}}}, nil},
		{"size too big", []mut{{"$.files[0].sizeInBytes", int64(2147483649)}}, []string{"$.files[0].sizeInBytes"}},
		{"size huge", []mut{{"$.files[0].sizeInBytes", raw("99999999999999999999999")}}, []string{"$.files[0].sizeInBytes"}},
		{"size fraction", []mut{{"$.files[0].sizeInBytes", 1.5}}, []string{"$.files[0].sizeInBytes"}},
		{"size exponent", []mut{{"$.files[0].sizeInBytes", raw("1e3")}}, []string{"$.files[0].sizeInBytes"}},
		{"size string", []mut{{"$.files[0].sizeInBytes", "1024"}}, []string{"$.files[0].sizeInBytes"}},
		{"size missing", []mut{{"$.files[0].sizeInBytes", del}}, []string{"$.files[0].sizeInBytes"}},
		{"total over 2 GiB", []mut{{"$.files[0].sizeInBytes", int64(2147483648) - 9}}, []string{"$.files"}},
		{"total of files over 2 GiB", []mut{{"$.files[1]", fileObj("b", 2147483648)}}, []string{"$.files"}},
		{"hashes missing", []mut{{"$.files[0].hashes", del}}, []string{"$.files[0].hashes"}},
		{"hashes string", []mut{{"$.files[0].hashes", b64(32)}}, []string{"$.files[0].hashes"}},
		{"sha256 missing", []mut{{"$.files[0].hashes", map[string]any{"sha1": b64(20)}}}, []string{"$.files[0].hashes.sha256"}},
		{"sha256 upper case only", []mut{{"$.files[0].hashes", map[string]any{"SHA256": b64(32)}}}, []string{"$.files[0].hashes.sha256"}},
		{"two hashes", []mut{{"$.files[0].hashes.sha512", b64(64)}}, nil},
		{"three hashes", []mut{{"$.files[0].hashes.sha512", b64(64)}, {"$.files[0].hashes.sha1", b64(20)}}, []string{"$.files[0].hashes"}},
		{"hash name 10", []mut{{"$.files[0].hashes." + s("h", 10), b64(8)}}, nil},
		{"hash name 11", []mut{{"$.files[0].hashes." + s("h", 11), b64(8)}}, []string{"$.files[0].hashes." + s("h", 11)}},
		{"sha256 not base64", []mut{{"$.files[0].hashes.sha256", "not base64!"}}, []string{"$.files[0].hashes.sha256"}},
		{"sha256 url base64", []mut{{"$.files[0].hashes.sha256", strings.ReplaceAll(strings.ReplaceAll(b64(32)+"", "+", "-"), "/", "_")[:43] + "-"}}, []string{"$.files[0].hashes.sha256"}},
		{"sha256 unpadded", []mut{{"$.files[0].hashes.sha256", strings.TrimRight(b64(32), "=")}}, []string{"$.files[0].hashes.sha256"}},
		{"sha256 line break", []mut{{"$.files[0].hashes.sha256", b64(32)[:20] + "\n" + b64(32)[20:]}}, []string{"$.files[0].hashes.sha256"}},
		{"sha256 31 bytes", []mut{{"$.files[0].hashes.sha256", b64(31)}}, []string{"$.files[0].hashes.sha256"}},
		{"sha256 hex", []mut{{"$.files[0].hashes.sha256", strings.Repeat("ab", 32)}}, []string{"$.files[0].hashes.sha256"}},
		{"sha256 empty", []mut{{"$.files[0].hashes.sha256", ""}}, []string{"$.files[0].hashes.sha256"}},
		{"sha256 number", []mut{{"$.files[0].hashes.sha256", 1}}, []string{"$.files[0].hashes.sha256"}},
		{"other hash not base64", []mut{{"$.files[0].hashes.sha1", "zz"}}, []string{"$.files[0].hashes.sha1"}},
		{"file properties string", []mut{{"$.files[0].properties", "x"}}, []string{"$.files[0].properties"}},
		{"file unknown member allowed", []mut{{"$.files[0].mimeType", "application/octet-stream"}}, nil},
		{"relatedFiles object", []mut{{"$.files[0].relatedFiles", map[string]any{}}}, []string{"$.files[0].relatedFiles"}},
		{"relatedFiles 4", []mut{{"$.files[0].relatedFiles", repeatList(fileObj("d", 1), 4)}}, nil},
		{"relatedFiles 5", []mut{{"$.files[0].relatedFiles", repeatList(fileObj("d", 1), 5)}}, []string{"$.files[0].relatedFiles"}},
		{"related not object", []mut{{"$.files[0].relatedFiles[0]", 1}}, []string{"$.files[0].relatedFiles[0]"}},
		{"related filename missing", []mut{{"$.files[0].relatedFiles[0].filename", del}}, []string{"$.files[0].relatedFiles[0].filename"}},
		{"related filename 256", []mut{{"$.files[0].relatedFiles[0].filename", s("r", 256)}}, []string{"$.files[0].relatedFiles[0].filename"}},
		{"related size 0", []mut{{"$.files[0].relatedFiles[0].sizeInBytes", 0}}, []string{"$.files[0].relatedFiles[0].sizeInBytes"}},
		{"related size counts in total", []mut{{"$.files[0].relatedFiles[0].sizeInBytes", int64(2147483648) - 1023}}, []string{"$.files"}},
		{"related hashes missing", []mut{{"$.files[0].relatedFiles[0].hashes", del}}, []string{"$.files[0].relatedFiles[0].hashes"}},
		{"related sha256 bad", []mut{{"$.files[0].relatedFiles[0].hashes.sha256", "abc"}}, []string{"$.files[0].relatedFiles[0].hashes.sha256"}},
		{"related properties absent", []mut{{"$.files[0].relatedFiles[0].properties", del}}, nil},
		{"related properties string", []mut{{"$.files[0].relatedFiles[0].properties", "x"}}, []string{"$.files[0].relatedFiles[0].properties"}},
		{"related properties 5", []mut{{"$.files[0].relatedFiles[0].properties", compatN(5)}}, nil},
		{"related properties 6", []mut{{"$.files[0].relatedFiles[0].properties", compatN(6)}}, []string{"$.files[0].relatedFiles[0].properties"}},
		{"related property name 64", []mut{{"$.files[0].relatedFiles[0].properties." + s("k", 64), "v"}}, nil},
		{"related property name 65", []mut{{"$.files[0].relatedFiles[0].properties." + s("k", 65), "v"}}, []string{"$.files[0].relatedFiles[0].properties." + s("k", 65)}},
		{"related property value 256", []mut{{"$.files[0].relatedFiles[0].properties.k", s("v", 256)}}, nil},
		{"related property value 257", []mut{{"$.files[0].relatedFiles[0].properties.k", s("v", 257)}}, []string{"$.files[0].relatedFiles[0].properties.k"}},
		{"related property object value 257", []mut{{"$.files[0].relatedFiles[0].properties.k", map[string]any{"a": s("v", 250)}}}, []string{"$.files[0].relatedFiles[0].properties.k"}},
		{"related unknown member allowed", []mut{{"$.files[0].relatedFiles[0].mimeType", "x"}}, nil},
		{"downloadHandler missing with related", []mut{{"$.files[0].downloadHandler", del}}, []string{"$.files[0].downloadHandler"}},
		{"downloadHandler missing, related empty", []mut{{"$.files[0].downloadHandler", del}, {"$.files[0].relatedFiles", []any{}}}, nil},
		{"downloadHandler string", []mut{{"$.files[0].downloadHandler", "microsoft/delta:1"}}, []string{"$.files[0].downloadHandler"}},
		{"downloadHandler id missing", []mut{{"$.files[0].downloadHandler.id", del}}, []string{"$.files[0].downloadHandler.id"}},
		{"downloadHandler id short", []mut{{"$.files[0].downloadHandler.id", "d:1"}}, []string{"$.files[0].downloadHandler.id", "$.files[0].downloadHandler.id"}},
		{"downloadHandler id 64", []mut{{"$.files[0].downloadHandler.id", "microsoft/" + s("x", 52) + ":1"}}, nil},
		{"downloadHandler id 65", []mut{{"$.files[0].downloadHandler.id", "microsoft/" + s("x", 53) + ":1"}}, []string{"$.files[0].downloadHandler.id"}},
		{"downloadHandler id pattern", []mut{{"$.files[0].downloadHandler.id", "microsoft-delta-1"}}, []string{"$.files[0].downloadHandler.id"}},
		{"downloadHandler unknown", []mut{{"$.files[0].downloadHandler.x", 1}}, []string{"$.files[0].downloadHandler.x"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			doc := decodeAny(t, validManifest)
			for _, m := range tc.muts {
				doc = mutate(t, doc, m.path, m.v)
			}
			data, err := json.Marshal(doc)
			if err != nil {
				t.Fatal(err)
			}
			vs := Validate(data)
			var got []string
			for _, v := range vs {
				got = append(got, v.Path)
				if v.Message == "" {
					t.Errorf("%s: empty message", v.Path)
				}
			}
			want := slices.Clone(tc.want)
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("paths %q, want %q\nviolations: %v", got, want, vs)
			}
		})
	}
}

func TestValidateAllViolationsInDocumentOrder(t *testing.T) {
	doc := `{
  "updateId": {"name": "a b", "provider": 5, "x": 1},
  "compatibility": [{"model": ""}, "x"],
  "instructions": {"steps": [
    {"handler": "bad", "files": ["fw.bin", "missing.bin"]},
    {"type": "reference", "updateId": {"provider": "C", "name": "N", "version": "1"}, "files": []},
    {"type": "other"}
  ]},
  "files": [
    {"filename": "fw.bin", "sizeInBytes": 0, "hashes": {"sha256": "AAAA"}},
    {"filename": "fw.bin", "sizeInBytes": 1, "hashes": {}, "relatedFiles": [{"filename": "d"}]}
  ],
  "manifestVersion": "5.0",
  "extra": true,
  "updateId": {}
}`
	want := []string{
		"$.updateId.name",                          // pattern
		"$.updateId.provider",                      // type
		"$.updateId.x",                             // unknown
		"$.updateId.version",                       // missing, after the members
		"$.compatibility[0].model",                 // empty
		"$.compatibility[1]",                       // type
		"$.instructions.steps[0].handler",          // length
		"$.instructions.steps[0].handler",          // pattern
		"$.instructions.steps[0].files[1]",         // not in files
		"$.instructions.steps[1].updateId.version", // one part
		"$.instructions.steps[1].files",            // not allowed in a reference step
		"$.instructions.steps[2].type",             // neither inline nor reference
		"$.instructions.steps[2].handler",          // missing
		"$.instructions.steps[2].files",            // missing
		"$.files[0].sizeInBytes",
		"$.files[0].hashes.sha256", // 3 bytes
		"$.files[1].filename",      // duplicate
		"$.files[1].hashes.sha256", // missing
		"$.files[1].relatedFiles[0].sizeInBytes",
		"$.files[1].relatedFiles[0].hashes",
		"$.files[1].downloadHandler", // required with relatedFiles
		"$.extra",
		"$.updateId", // duplicate member
		"$.createdDateTime",
	}
	vs := Validate([]byte(doc))
	var got []string
	for _, v := range vs {
		got = append(got, v.Path)
	}
	if !slices.Equal(got, want) {
		t.Errorf("got paths\n  %s\nwant\n  %s\nviolations:\n%v", strings.Join(got, "\n  "), strings.Join(want, "\n  "), vs)
	}
	err := &ValidationError{Violations: vs}
	if !errors.Is(err, ErrInvalid) {
		t.Error("ValidationError is not ErrInvalid")
	}
	if n := strings.Count(err.Error(), "\n"); n != len(want) {
		t.Errorf("error has %d lines, want one per violation plus a header:\n%s", n+1, err)
	}
}

func TestValidateMessages(t *testing.T) {
	vs := Validate([]byte(`{"updateId":{"provider":7,"name":"Toaster","version":"1.0"},"compatibility":[{"a":"b"}],"instructions":{"steps":[{"handler":"a/b:1","files":["x"]}]},"files":[{"filename":"x","sizeInBytes":5,"hashes":{"sha256":"AAAA"}}],"manifestVersion":"5.0","createdDateTime":"2020-01-01T00:00:00Z"}`))
	want := []string{
		"$.updateId.provider: must be a string, got number",
		"$.files[0].hashes.sha256: must encode a 32-byte sha256 digest, got 3 bytes",
	}
	var got []string
	for _, v := range vs {
		got = append(got, v.String())
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %q\nwant %q", got, want)
	}
}

func TestValidateDuplicateMembers(t *testing.T) {
	doc := strings.Replace(validManifest, `"provider": "Contoso",`, `"provider": "Contoso", "provider": "Other",`, 1)
	doc = strings.Replace(doc, `"model": "Toaster"`, `"model": "Toaster", "model": "Toaster2"`, 1)
	doc = strings.Replace(doc, `{"installedCriteria": "1.0.2"}`, `{"installedCriteria": "1.0.2", "installedCriteria": "1"}`, 1)
	doc = strings.Replace(doc, `"properties": {"k": "v"}`, `"properties": {"k": "v", "k": {}}`, 1)
	vs := Validate([]byte(doc))
	var got []string
	for _, v := range vs {
		got = append(got, v.String())
	}
	want := []string{
		"$.updateId.provider: duplicate member",
		"$.compatibility[0].model: duplicate member",
		"$.instructions.steps[0].handlerProperties.installedCriteria: duplicate member",
		"$.files[0].properties.k: duplicate member",
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestValidateSyntaxErrors(t *testing.T) {
	for _, tc := range []struct {
		in        string
		line, col int
	}{
		{"", 1, 1},
		{"   ", 1, 4},
		{"{", 1, 2},
		{`{"a":}`, 1, 6},
		{"{\n  \"a\": 1,\n  \"b\": x\n}", 3, 8},
		{"{\n  \"é\": 1,\n  \"b\" 2}", 3, 7},
		{`{"a":1}}`, 1, 8},
		{`{"a":1,}`, 1, 8},
		{"{'a':1}", 1, 2},
		{`{"a":"\x"}`, 1, 8},
		{`nul`, 1, 4},
	} {
		vs := Validate([]byte(tc.in))
		if len(vs) != 1 {
			t.Errorf("%q: %v, want one violation", tc.in, vs)
			continue
		}
		v := vs[0]
		if v.Path != "$" || v.Line != tc.line || v.Column != tc.col || !strings.Contains(v.Message, fmt.Sprintf("line %d, column %d", tc.line, tc.col)) {
			t.Errorf("%q: %+v, want line %d column %d", tc.in, v, tc.line, tc.col)
		}
	}
}

func TestValidateAcceptsBOM(t *testing.T) {
	if vs := Validate(append([]byte("\xEF\xBB\xBF"), validManifest...)); vs != nil {
		t.Errorf("with BOM: %v", vs)
	}
}

func TestFieldPaths(t *testing.T) {
	for in, want := range map[string]string{
		"files":                    "$.files",
		"$schema":                  "$.$schema",
		"microsoft.sourceFileHash": "$['microsoft.sourceFileHash']",
		"it's":                     `$['it\'s']`,
		"":                         "$['']",
		"9lives":                   "$['9lives']",
	} {
		if got := field("$", in); got != want {
			t.Errorf("field(%q) = %s, want %s", in, got, want)
		}
	}
}
