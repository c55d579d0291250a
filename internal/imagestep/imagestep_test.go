package imagestep

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/aduflash/aduflash/agent"
	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/image/mcuboot"
	"github.com/aduflash/aduflash/manifestgen"
)

func TestHandlerIsTheAgents(t *testing.T) {
	if Handler != agent.HandlerImage || AdaptiveHandler != agent.DownloadHandlerAdaptive {
		t.Fatalf("Handler %q, AdaptiveHandler %q; aduagent runs %q, %q", Handler, AdaptiveHandler, agent.HandlerImage, agent.DownloadHandlerAdaptive)
	}
}

// files writes test files into a directory and maps their names to paths.
type files struct {
	t   *testing.T
	dir string
}

func newFiles(t *testing.T) files { return files{t, t.TempDir()} }

func (fs files) path(name string) string { return filepath.Join(fs.dir, name) }

func (fs files) write(name string, data []byte) {
	if err := os.WriteFile(fs.path(name), data, 0o600); err != nil {
		fs.t.Fatal(err)
	}
}

// aduimg writes an aduimg image signed for version, slot class and compatibility.
func (fs files) aduimg(name, version, class string, compat map[string]string) {
	key, err := image.GenerateKey(image.Ed25519, rand.Reader)
	if err != nil {
		fs.t.Fatal(err)
	}
	f, err := os.Create(fs.path(name))
	if err != nil {
		fs.t.Fatal(err)
	}
	defer f.Close()
	payload := bytes.Repeat([]byte{7}, 3000)
	if _, _, err := image.Sign(f, bytes.NewReader(payload), int64(len(payload)), key, image.SignOptions{
		Version: version, SlotClass: class, Compatibility: compat}); err != nil {
		fs.t.Fatal(err)
	}
}

// mcuboot writes an MCUboot image of version.
func (fs files) mcuboot(name, version string) {
	key, err := image.GenerateKey(image.ECDSAP256, rand.Reader)
	if err != nil {
		fs.t.Fatal(err)
	}
	v, err := mcuboot.ParseVersion(version)
	if err != nil {
		fs.t.Fatal(err)
	}
	data, err := mcuboot.Sign(make([]byte, 1024), key, mcuboot.SignOptions{Version: v})
	if err != nil {
		fs.t.Fatal(err)
	}
	fs.write(name, data)
}

var toaster = manifestgen.Compatibility{{Name: "manufacturer", Value: "Contoso"}, {Name: "model", Value: "Toaster"}}

// manifest is an update with compatibility compat, steps, and the files the steps name.
func manifest(compat []manifestgen.Compatibility, steps ...manifestgen.Step) *manifestgen.Manifest {
	m := &manifestgen.Manifest{Compatibility: compat}
	m.Instructions.Steps = steps
	for _, st := range steps {
		for _, n := range st.Files {
			m.Files = append(m.Files, manifestgen.File{Filename: n})
		}
	}
	return m
}

func step(props string, names ...string) manifestgen.Step {
	st := manifestgen.Step{Type: manifestgen.StepInline, Handler: Handler, Files: names}
	if props != "" {
		o, err := manifestgen.ParseObject([]byte(props))
		if err != nil {
			panic(err)
		}
		st.HandlerProperties = o
	}
	return st
}

// checkViolations runs Check and returns the violations, failing on any other error.
func checkViolations(t *testing.T, fs files, m *manifestgen.Manifest) []manifestgen.Violation {
	t.Helper()
	err := Check(m, fs.path)
	if err == nil {
		return nil
	}
	var ve *manifestgen.ValidationError
	if !errors.As(err, &ve) || !errors.Is(err, manifestgen.ErrInvalid) {
		t.Fatalf("Check: %v, want a *manifestgen.ValidationError", err)
	}
	return ve.Violations
}

func TestCheck(t *testing.T) {
	fs := newFiles(t)
	fs.aduimg("toaster.aduimg", "1.2.0", "rootfs", map[string]string{"manufacturer": "contoso", "model": "toaster"})
	fs.aduimg("blender.aduimg", "1.2.0", "rootfs", map[string]string{"model": "blender"})
	fs.aduimg("kernel.aduimg", "1.2.0", "kernel", nil)
	fs.aduimg("anyclass.aduimg", "3.0", "", map[string]string{"hwrev": "2"})
	fs.mcuboot("mcu.bin", "1.2.3")
	fs.write("raw.bin", bytes.Repeat([]byte{1}, 100))
	fs.write("broken.aduimg", append([]byte(image.Magic), bytes.Repeat([]byte{0xff}, 40)...))
	blender := manifestgen.Compatibility{{Name: "model", Value: "Blender"}}

	cases := []struct {
		name string
		m    *manifestgen.Manifest
		want []string // "path: part of the message", in order
	}{
		{"matching", manifest([]manifestgen.Compatibility{toaster},
			step(`{"installedCriteria":"1.2.0","slotClass":"rootfs"}`, "toaster.aduimg")), nil},
		{"compatibility another model", manifest([]manifestgen.Compatibility{toaster},
			step(`{"installedCriteria":"1.2.0"}`, "blender.aduimg")),
			[]string{"$.compatibility[0]: model=Toaster, but blender.aduimg is signed for model=blender"}},
		{"every set must match", manifest([]manifestgen.Compatibility{toaster, blender},
			step(`{"installedCriteria":"1.2.0"}`, "toaster.aduimg")),
			[]string{"$.compatibility[1]: model=Blender, but toaster.aduimg is signed for model=toaster"}},
		{"a property the manifest does not name", manifest([]manifestgen.Compatibility{toaster},
			step(`{"installedCriteria":"3.0"}`, "anyclass.aduimg")), nil},
		{"slot class", manifest([]manifestgen.Compatibility{toaster},
			step(`{"installedCriteria":"1.2.0","slotClass":"kernel"}`, "toaster.aduimg")),
			[]string{`$.instructions.steps[0].handlerProperties.slotClass: is "kernel", but toaster.aduimg is signed for slot class rootfs`}},
		{"two steps, one class", manifest([]manifestgen.Compatibility{toaster},
			step(`{"installedCriteria":"1.2.0"}`, "toaster.aduimg"),
			step(`{"installedCriteria":"3.0","slotClass":"rootfs"}`, "anyclass.aduimg")),
			[]string{"$.instructions.steps[1].handlerProperties: writes slot class rootfs, which step 1 writes already"}},
		{"two steps, two classes", manifest([]manifestgen.Compatibility{toaster},
			step(`{"installedCriteria":"1.2.0"}`, "toaster.aduimg"),
			step(`{"installedCriteria":"1.2.0"}`, "kernel.aduimg")), nil},
		{"criteria is not the version", manifest([]manifestgen.Compatibility{toaster},
			step(`{"installedCriteria":"1.0"}`, "toaster.aduimg")),
			[]string{`$.instructions.steps[0].handlerProperties.installedCriteria: is "1.0", but toaster.aduimg is version 1.2.0`}},
		{"criteria missing", manifest([]manifestgen.Compatibility{toaster},
			step(`{"slotClass":"rootfs"}`, "toaster.aduimg")),
			[]string{`$.instructions.steps[0].handlerProperties: aduflash/image:1 needs installedCriteria, or aduagent installs the update again at every deployment (use the image's version "1.2.0")`}},
		{"criteria null", manifest([]manifestgen.Compatibility{toaster},
			step(`{"installedCriteria":null}`, "toaster.aduimg")),
			[]string{"$.instructions.steps[0].handlerProperties: aduflash/image:1 needs installedCriteria"}},
		{"criteria not a string", manifest([]manifestgen.Compatibility{toaster},
			step(`{"installedCriteria":120}`, "toaster.aduimg")),
			[]string{"$.instructions.steps[0].handlerProperties.installedCriteria: aduflash/image:1 reads it as a string, got 120",
				"$.instructions.steps[0].handlerProperties: aduflash/image:1 needs installedCriteria"}},
		{"raw file with criteria", manifest([]manifestgen.Compatibility{toaster},
			step(`{"installedCriteria":"anything"}`, "raw.bin")), nil},
		{"raw file without criteria", manifest([]manifestgen.Compatibility{toaster},
			step(``, "raw.bin")),
			[]string{"$.instructions.steps[0].handlerProperties: aduflash/image:1 needs installedCriteria, or aduagent installs the update again at every deployment (the step's files give no single aduimg or MCUboot version to use)"}},
		{"mcuboot version", manifest([]manifestgen.Compatibility{toaster},
			step(`{"installedCriteria":"1.2.3+0"}`, "mcu.bin")), nil},
		{"mcuboot version without build", manifest([]manifestgen.Compatibility{toaster},
			step(`{"installedCriteria":"1.2.3"}`, "mcu.bin")), nil},
		{"mcuboot another version", manifest([]manifestgen.Compatibility{toaster},
			step(`{"installedCriteria":"1.2.4"}`, "mcu.bin")),
			[]string{`$.instructions.steps[0].handlerProperties.installedCriteria: is "1.2.4", but mcu.bin is version 1.2.3+0`}},
		{"an image that does not parse", manifest([]manifestgen.Compatibility{toaster},
			step(`{"installedCriteria":"1"}`, "broken.aduimg")),
			[]string{"$.files[0].filename: broken.aduimg: aduimg: "}},
		{"another handler is not ours to check", manifest([]manifestgen.Compatibility{toaster},
			manifestgen.Step{Type: manifestgen.StepInline, Handler: "microsoft/script:1", Files: []string{"blender.aduimg"}}), nil},
		{"the handler name is case-insensitive", manifest([]manifestgen.Compatibility{toaster},
			manifestgen.Step{Type: manifestgen.StepInline, Handler: "ADUflash/Image:1", Files: []string{"blender.aduimg"}}),
			[]string{"$.compatibility[0]: model=Toaster", "$.instructions.steps[0].handlerProperties: aduflash/image:1 needs installedCriteria"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			vs := checkViolations(t, fs, c.m)
			if len(vs) != len(c.want) {
				t.Fatalf("got %d violation(s) %v, want %d %q", len(vs), vs, len(c.want), c.want)
			}
			for i, v := range vs {
				if got := v.Path + ": " + v.Message; !strings.HasPrefix(got, c.want[i]) {
					t.Errorf("violation %d: %q, want it to start with %q", i, got, c.want[i])
				}
			}
		})
	}
}

func TestCompleteFillsWhatTheImageSays(t *testing.T) {
	fs := newFiles(t)
	fs.aduimg("rootfs.aduimg", "1.2.0", "rootfs", map[string]string{"model": "toaster"})
	fs.mcuboot("mcu.bin", "2.0.1+7")
	m := manifest([]manifestgen.Compatibility{toaster},
		step(``, "rootfs.aduimg"),
		step(`{"slotClass":"mcu","x":1}`, "mcu.bin"),
		manifestgen.Step{Type: manifestgen.StepInline, Handler: "microsoft/script:1", Files: []string{"rootfs.aduimg"}})
	if err := Complete(m, fs.path); err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{
		`{"installedCriteria":"1.2.0","slotClass":"rootfs"}`,
		`{"slotClass":"mcu","x":1,"installedCriteria":"2.0.1+7"}`,
	} {
		got, err := json.Marshal(m.Instructions.Steps[i].HandlerProperties)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != want {
			t.Errorf("step %d: handlerProperties %s, want %s", i, got, want)
		}
	}
	if hp := m.Instructions.Steps[2].HandlerProperties; hp != nil {
		t.Errorf("the microsoft/script:1 step got handlerProperties %v", hp)
	}
}

// Related files that are an adaptive index and chunk store get the property that tells them
// apart, and their file the adaptive download handler; a property or handler given is kept,
// and other related files are left alone.
func TestNameAdaptive(t *testing.T) {
	fs := newFiles(t)
	fs.write("rootfs.aduidx", append([]byte("\x89ADUIDX\n"), make([]byte, 200)...))
	fs.write("rootfs.aduchunks", append([]byte("\x89ADUCHK\n"), make([]byte, 8)...))
	fs.write("other.bin", []byte("a delta of another kind"))
	given, _ := manifestgen.ParseObject([]byte(`{"aduflash.adaptive":"store","x":1}`))
	spec := manifestgen.Spec{Files: []manifestgen.FileSpec{{Path: fs.path("rootfs.aduimg"), Related: []manifestgen.RelatedFileSpec{
		{Path: fs.path("rootfs.aduidx")}, {Path: fs.path("rootfs.aduchunks"), Properties: given}, {Path: fs.path("other.bin")}}},
		{Path: fs.path("other.aduimg"), DownloadHandler: "x/y:1", Related: []manifestgen.RelatedFileSpec{{Path: fs.path("rootfs.aduidx")}}}}}
	if err := NameAdaptive(&spec); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range spec.Files[0].Related {
		b, _ := json.Marshal(r.Properties)
		got = append(got, string(b))
	}
	if want := []string{`{"aduflash.adaptive":"index"}`, `{"aduflash.adaptive":"store","x":1}`, `{}`}; !slices.Equal(got, want) ||
		spec.Files[0].DownloadHandler != AdaptiveHandler || spec.Files[1].DownloadHandler != "x/y:1" {
		t.Fatalf("related files' properties %v, download handlers %q, %q; want %v and %s, x/y:1", got, spec.Files[0].DownloadHandler, spec.Files[1].DownloadHandler, want, AdaptiveHandler)
	}
}

func TestCompleteKeepsWhatTheStepSays(t *testing.T) {
	fs := newFiles(t)
	fs.aduimg("rootfs.aduimg", "1.2.0", "rootfs", nil)
	m := manifest([]manifestgen.Compatibility{toaster}, step(`{"installedCriteria":"1.0","slotClass":"kernel"}`, "rootfs.aduimg"))
	err := Complete(m, fs.path)
	var ve *manifestgen.ValidationError
	if !errors.As(err, &ve) || len(ve.Violations) != 2 {
		t.Fatalf("Complete: %v, want the two conflicts reported", err)
	}
	got, _ := json.Marshal(m.Instructions.Steps[0].HandlerProperties)
	if string(got) != `{"installedCriteria":"1.0","slotClass":"kernel"}` {
		t.Errorf("handlerProperties %s were changed", got)
	}
}

func TestUnreadableFileIsNoViolation(t *testing.T) {
	fs := newFiles(t)
	m := manifest([]manifestgen.Compatibility{toaster}, step(`{"installedCriteria":"1"}`, "missing.aduimg"))
	err := Check(m, fs.path)
	if err == nil || errors.Is(err, manifestgen.ErrInvalid) || !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "missing.aduimg") {
		t.Fatalf("Check: %v, want the file's read error, naming it", err)
	}
}
