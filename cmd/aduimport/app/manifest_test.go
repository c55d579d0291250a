package app

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aduflash/aduflash/cmd/internal/exitcode"
	"github.com/aduflash/aduflash/manifestgen"
)

const fixedCreated = "--created=2024-05-06T07:08:09Z"

// payloads writes small files with fixed contents into a new directory.
func payloads(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range map[string]string{
		"install.sh":         "#!/bin/sh\nexec swupdate -i \"$1\"\n",
		"rootfs.swu":         strings.Repeat("rootfs image ", 1000),
		"delta-1.0-1.2.bin":  "delta from 1.0",
		"delta-1.1-1.2.bin":  "delta from 1.1",
		"bootloader.bin":     "u-boot",
		"apt-manifest.json":  `{"name":"toaster","version":"1.2","packages":[{"name":"toastd","version":"1.2"}]}`,
		"fw,with comma.bin":  "comma",
		"boot-delta-0.9.bin": "boot delta",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// inDir runs f with dir as the working directory.
func inDir(t *testing.T, dir string, f func()) {
	t.Helper()
	old, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chdir(dir); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := os.Chdir(old); err != nil {
			t.Fatal(err)
		}
	}()
	f()
}

func TestManifestCreateGolden(t *testing.T) {
	cases := []struct {
		name    string
		args    []string
		output  string   // file the manifest is written to ("" = stdout)
		stderr  []string // must appear on stderr
		noWarns bool
	}{
		{
			name: "inline-and-reference",
			args: []string{"--provider", "Contoso", "--name", "Toaster", "--version", "1.2",
				"--compat", "manufacturer=Contoso,model=Toaster",
				"--compat", "manufacturer=Contoso,model=Toaster Pro,group=beta",
				"--step", `handler=microsoft/script:1,files=install.sh,properties={"scriptFileName":"install.sh","arguments":"--stage=pre,--verbose","nested":{"list":[1,2,{"k":"a,b"}]}},description=pre-install`,
				"--step", `provider=Contoso,name=Toaster.Bootloader,version=1.0.3,description="bootloader, then reboot"`,
				"--file", "install.sh",
				"--description", "Toaster 1.2 with a new bootloader"},
			output:  "Contoso.Toaster.1.2.importmanifest.json",
			noWarns: true,
		},
		{
			name: "related-files",
			args: []string{"--provider", "Contoso", "--name", "Toaster", "--version", "1.2.0.7",
				"--compat", "manufacturer=Contoso,model=Toaster",
				"--step", `handler=microsoft/swupdate:2,files=rootfs.swu;bootloader.bin,properties={"installedCriteria":"1.2.0.7","swuFileName":"rootfs.swu"}`,
				"--file", `rootfs.swu,properties={"role":"rootfs","slots":["a","b"]},downloadHandler=microsoft/delta:1`,
				"--related-file", `delta-1.0-1.2.bin,properties={"microsoft.sourceFileHashAlgorithm":"sha256","microsoft.sourceFileHash":"YmFYwnEUddq2nZsBAn5v7gCRKdHx+TUntMz5tLwU+24="}`,
				"--related-file", `delta-1.1-1.2.bin,properties={"microsoft.sourceFileHashAlgorithm":"sha256","microsoft.sourceFileHash":"2MIldV8LkdKenjJasgTHuYi+apgtNQ9FeL2xsV3ikHY="}`,
				"--file", "bootloader.bin,downloadHandler=microsoft/delta:1",
				"--related-file", "boot-delta-0.9.bin",
				"-o", "toaster.importmanifest.json"},
			output:  "toaster.importmanifest.json",
			noWarns: true,
		},
		{
			name: "swupdate-default-criteria",
			args: []string{"--provider", "Contoso", "--name", "Toaster.Firmware", "--version", "2024.5.6",
				"--compat", "deviceManufacturer=Contoso,deviceModel=Toaster",
				"--step", "handler=microsoft/swupdate:1,description=flash the image",
				"--file", "rootfs.swu", "--file", "install.sh",
				"--is-deployable=false"},
			output: "Contoso.Toaster.Firmware.2024.5.6.importmanifest.json",
			stderr: []string{`aduimport: warning: step 1: handler microsoft/swupdate:1 needs handlerProperties.installedCriteria; using the default "1.0"`},
		},
		{
			name: "stdout-apt-equals-syntax",
			args: []string{"--provider=Contoso", "--name=Toaster.Packages", "--version=1.2",
				"--compat=manufacturer=Contoso,model=Toaster",
				"--step=handler=microsoft/apt:1,files=apt-manifest.json",
				"--step=handler=microsoft/apt:1,properties={\"installedCriteria\":\"toaster-1.2\"}",
				"--file=apt-manifest.json",
				"--description=Packages <toastd> & friends", "-o", "-"},
			stderr: []string{"step 1: handler microsoft/apt:1"},
		},
		{
			name: "quoted-path-and-html",
			args: []string{"--provider", "Contoso", "--name", "Toaster", "--version", "1.0",
				"--compat", `manufacturer="Contoso & Sons",model=<Toaster>`,
				"--step", "handler=contoso/flash:12345",
				"--file", `"fw,with comma.bin",properties={"note":"a<b>&c"}`,
				"--output", "out.json"},
			output:  "out.json",
			noWarns: true,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := payloads(t)
			var code int
			var stdout, stderr string
			inDir(t, dir, func() {
				code, stdout, stderr = run(t, append([]string{"manifest", "create", fixedCreated}, tc.args...)...)
			})
			if code != 0 {
				t.Fatalf("exit %d\nstderr: %s", code, stderr)
			}
			got := stdout
			if tc.output != "" {
				data, err := os.ReadFile(filepath.Join(dir, tc.output))
				if err != nil {
					t.Fatal(err)
				}
				got = string(data)
				if want := "written to " + tc.output; !strings.Contains(stdout, want) {
					t.Errorf("stdout %q lacks %q", stdout, want)
				}
			}
			for _, s := range tc.stderr {
				if !strings.Contains(stderr, s) {
					t.Errorf("stderr %q lacks %q", stderr, s)
				}
			}
			if tc.noWarns && stderr != "" {
				t.Errorf("unexpected stderr %q", stderr)
			}
			if vs := manifestgen.Validate([]byte(got)); vs != nil {
				t.Errorf("output does not validate: %v", vs)
			}
			golden(t, filepath.Join("manifest", tc.name+".golden"), got)
		})
	}
}

func TestManifestCreateInvalidWritesNothing(t *testing.T) {
	dir := payloads(t)
	var code int
	var stdout, stderr string
	inDir(t, dir, func() {
		code, stdout, stderr = run(t, "manifest", "create", fixedCreated,
			"--provider", "Con toso", "--name", "Toaster", "--version", "1",
			"--compat", "manufacturer="+strings.Repeat("x", 65),
			"--step", "handler=microsoft/script:1,files=nope.sh",
			"--file", "install.sh", "-o", "out.json")
	})
	if code != exitcode.Invalid {
		t.Fatalf("exit %d, want %d; stderr %s", code, exitcode.Invalid, stderr)
	}
	for _, p := range []string{"$.updateId.provider", "$.updateId.version", "$.compatibility[0].manufacturer", "$.instructions.steps[0].files[0]"} {
		if !strings.Contains(stderr, "\n  "+p+": ") {
			t.Errorf("stderr lacks violation %s:\n%s", p, stderr)
		}
	}
	if stdout != "" {
		t.Errorf("stdout %q", stdout)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".json") && e.Name() != "apt-manifest.json" || strings.HasSuffix(e.Name(), ".tmp") {
			t.Errorf("%s written although the manifest is invalid", e.Name())
		}
	}
}

func TestManifestCreateErrors(t *testing.T) {
	dir := payloads(t)
	base := []string{"manifest", "create", fixedCreated, "--provider", "C", "--name", "N", "--version", "1.0"}
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"--step", "handler=a/b:1", "--file", "install.sh"}, exitcode.Usage, "missing --compat"},
		{[]string{"--compat", "a=b", "--file", "install.sh"}, exitcode.Usage, "missing --step"},
		{[]string{"--compat", "a=b", "--step", "handler=a/b:1,foo=bar"}, exitcode.Usage, `--step "handler=a/b:1,foo=bar": unknown key "foo"`},
		{[]string{"--compat", "a", "--step", "handler=a/b:1"}, exitcode.Usage, "--compat"},
		{[]string{"--compat", "a=b", "--step", "handler=a/b:1", "--file", "install.sh,mode=1"}, exitcode.Usage, "--file"},
		{[]string{"--compat", "a=b", "--step", "handler=a/b:1", "--related-file", "delta-1.0-1.2.bin", "--file", "install.sh"}, exitcode.Usage, "comes before any --file"},
		{[]string{"--compat", "a=b", "--step", "handler=a/b:1", "--file", "install.sh", "--related-file", "d.bin,downloadHandler=x/y:1"}, exitcode.Usage, "--related-file"},
		{[]string{"--compat", "a=b", "--step", `handler=a/b:1,properties={"a":1`}, exitcode.Usage, "missing"},
		{[]string{"--compat", "a=b", "--step", "handler=a/b:1", "--no-such-flag"}, exitcode.Usage, "no-such-flag"},
		{[]string{"--compat", "a=b", "--step", "handler=a/b:1", "stray"}, exitcode.Usage, "stray"},
		{[]string{"--compat", "a=b", "--step", "handler=a/b:1", "--created", "yesterday"}, exitcode.Usage, "--created"},
		{[]string{"--compat", "a=b", "--step", "handler=a/b:1", "--description", ""}, exitcode.Usage, "--description"},
		{[]string{"--compat", "a=b", "--step", "handler=a/b:1", "--file", "missing.bin"}, exitcode.IO, "missing.bin"},
		{[]string{"--compat", "a=b", "--step", "handler=a/b:1", "--file", "install.sh", "--file", "install.sh"}, exitcode.Invalid, "$.files[1].filename"},
		{[]string{"--compat", "a=b", "--step", "handler=a/b:1"}, exitcode.Invalid, "$.instructions.steps[0].files"},
		{[]string{"--compat", "a=b", "--step", "handler=a/b:1", "--file", "rootfs.swu", "--related-file", "delta-1.0-1.2.bin"}, exitcode.Invalid, "$.files[0].downloadHandler: is required"},
	} {
		var code int
		var stderr string
		inDir(t, dir, func() { code, _, stderr = run(t, append(append([]string{}, base...), tc.args...)...) })
		if code != tc.code || !strings.Contains(stderr, tc.msg) {
			t.Errorf("%q: exit %d, stderr %q; want exit %d and %q", tc.args, code, stderr, tc.code, tc.msg)
		}
	}
	// Missing identity flags.
	code, _, stderr := run(t, "manifest", "create", "--name", "N", "--version", "1.0", "--compat", "a=b", "--step", "handler=a/b:1")
	if code != exitcode.Usage || !strings.Contains(stderr, "missing --provider") {
		t.Errorf("missing --provider: exit %d %q", code, stderr)
	}
}

func TestManifestCreateHelp(t *testing.T) {
	code, out, _ := run(t, "manifest", "create", "--compat", "a=b", "--help")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, s := range []string{"EXAMPLE:", "--compat k=v[,k=v...]", "--step k=v[,k=v...]", "--file PATH[,k=v...]", "--related-file PATH[,k=v...]", "--is-deployable", "--output FILE, -o FILE"} {
		if !strings.Contains(out, s) {
			t.Errorf("help lacks %q:\n%s", s, out)
		}
	}
	if strings.Contains(out, "--created") {
		t.Error("hidden --created shows in the help")
	}
}

// A symbolic link (or a device such as /dev/stdout) is written through, not replaced.
func TestManifestCreateWritesThroughSymlink(t *testing.T) {
	dir := payloads(t)
	target := filepath.Join(dir, "target.json")
	if err := os.WriteFile(target, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(dir, "link.json")); err != nil {
		t.Skip("no symlinks:", err)
	}
	var code int
	var stderr string
	inDir(t, dir, func() {
		code, _, stderr = run(t, "manifest", "create", fixedCreated, "--provider", "C", "--name", "N", "--version", "1.0",
			"--compat", "a=b", "--step", "handler=a/b:1", "--file", "install.sh", "-o", "link.json")
	})
	if code != 0 {
		t.Fatalf("exit %d %s", code, stderr)
	}
	if fi, err := os.Lstat(filepath.Join(dir, "link.json")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("link.json is no longer a symlink: %v %v", fi, err)
	}
	if data, _ := os.ReadFile(target); manifestgen.Validate(data) != nil || len(data) == 0 {
		t.Errorf("target not written: %q", data)
	}
}

// leafManifest is Microsoft's documentation example of a leaf update (isDeployable false).
const leafManifest = `{
  "updateId": {
    "provider": "Contoso",
    "name": "Toaster",
    "version": "1.0"
  },
  "isDeployable": false,
  "compatibility": [
    {
      "manufacturer": "Contoso",
      "model": "Toaster"
    }
  ],
  "instructions": {
    "steps": [
      {
        "handler": "microsoft/swupdate:1",
        "files": [
          "firmware.swu"
        ],
        "handlerProperties": {
          "installedCriteria": "1.0"
        }
      }
    ]
  },
  "files": [
    {
      "filename": "firmware.swu",
      "sizeInBytes": 7558,
      "hashes": {
        "sha256": "/CD7Sn6fiknWa3NgcFjGlJ+ccA81s1QAXX4oo5GHiFA="
      }
    }
  ],
  "createdDateTime": "2022-01-19T06:23:52.6996916Z",
  "manifestVersion": "5.0"
}
`

func writeManifests(t *testing.T) (dir string) {
	t.Helper()
	dir = t.TempDir()
	valid := []byte(leafManifest)
	invalid := strings.NewReplacer(`"Contoso",`, `"Con toso",`, `"1.0"`, `"1"`, `"microsoft/swupdate:1"`, `"swupdate"`).Replace(string(valid))
	for name, data := range map[string]string{
		"valid.json":   string(valid),
		"invalid.json": invalid + "\n",
		"syntax.json":  "{\n  \"updateId\": {\n    \"provider\": \"C\",\n  }\n}\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestManifestCheck(t *testing.T) {
	dir := writeManifests(t)
	var code int
	var stdout, stderr string
	inDir(t, dir, func() { code, stdout, stderr = run(t, "manifest", "check", "valid.json") })
	if code != 0 || stdout != "valid.json: ok\n" || stderr != "" {
		t.Errorf("valid: exit %d, %q, %q", code, stdout, stderr)
	}

	inDir(t, dir, func() {
		code, stdout, stderr = run(t, "manifest", "check", "valid.json", "invalid.json", "syntax.json")
	})
	if code != exitcode.Invalid || !strings.Contains(stderr, "2 of 3 manifest(s) invalid") {
		t.Errorf("invalid: exit %d, stderr %q", code, stderr)
	}
	golden(t, filepath.Join("manifest", "check.golden"), stdout)

	inDir(t, dir, func() { code, stdout, stderr = run(t, "manifest", "check", "invalid.json", "missing.json") })
	if code != exitcode.IO || !strings.Contains(stderr, "missing.json") || !strings.Contains(stdout, "invalid.json: $.updateId.provider: ") {
		t.Errorf("missing: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}

	if code, _, _ := run(t, "manifest", "check"); code != exitcode.Usage {
		t.Errorf("no arguments: exit %d", code)
	}
}

func TestManifestCheckJSON(t *testing.T) {
	dir := writeManifests(t)
	var code int
	var stdout, stderr string
	inDir(t, dir, func() {
		code, stdout, stderr = run(t, "manifest", "check", "--json", "valid.json", "syntax.json", "missing.json")
	})
	if code != exitcode.IO || stderr != "" {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
	var results []struct {
		File       string                  `json:"file"`
		Valid      bool                    `json:"valid"`
		Violations []manifestgen.Violation `json:"violations"`
		Error      string                  `json:"error"`
	}
	if err := json.Unmarshal([]byte(stdout), &results); err != nil {
		t.Fatalf("%v\n%s", err, stdout)
	}
	if len(results) != 3 ||
		!results[0].Valid || results[0].File != "valid.json" || len(results[0].Violations) != 0 ||
		results[1].Valid || len(results[1].Violations) != 1 || results[1].Violations[0].Line != 4 || results[1].Violations[0].Column != 3 ||
		results[2].Valid || results[2].Error == "" {
		t.Errorf("results %+v", results)
	}

	inDir(t, dir, func() { code, stdout, stderr = run(t, "manifest", "check", "--json", "invalid.json") })
	if code != exitcode.Invalid || stderr != "" || !strings.Contains(stdout, `"path": "$.updateId.provider"`) {
		t.Errorf("invalid: exit %d, stdout %s, stderr %q", code, stdout, stderr)
	}
}

// What create writes, check accepts.
func TestManifestCreateThenCheck(t *testing.T) {
	dir := payloads(t)
	var code int
	var stdout, stderr string
	inDir(t, dir, func() {
		code, _, stderr = run(t, "manifest", "create", "--provider", "C", "--name", "N", "--version", "1.0",
			"--compat", "a=b", "--step", "handler=microsoft/swupdate:1", "--file", "rootfs.swu,downloadHandler=microsoft/delta:1",
			"--related-file", "delta-1.0-1.2.bin")
		if code != 0 {
			t.Fatalf("create: exit %d %s", code, stderr)
		}
		code, stdout, stderr = run(t, "manifest", "check", "C.N.1.0.importmanifest.json")
	})
	if code != 0 || stdout != "C.N.1.0.importmanifest.json: ok\n" {
		t.Errorf("check: exit %d, %q %q", code, stdout, stderr)
	}
}

// An aduflash/image:1 step is checked against its image as aduagent would check it, and
// takes installedCriteria and slotClass from it when it gives none.
func TestManifestCreateImageStep(t *testing.T) {
	dir, _, _, _, _ := signed(t) // rootfs.aduimg: 2.1.0, slot class rootfs, manufacturer=contoso,model=toaster
	base := []string{"manifest", "create", fixedCreated, "--provider", "Contoso", "--name", "Toaster", "--version", "2.1.0",
		"--file", "rootfs.aduimg", "-o", "out.json"}
	for _, tc := range []struct {
		name, compat, step string
		code               int
		msg                string
	}{
		{"defaults", "manufacturer=Contoso,model=Toaster", "handler=aduflash/image:1", 0, ""},
		{"another model", "manufacturer=Contoso,model=Blender", "handler=aduflash/image:1", exitcode.Invalid,
			"$.compatibility[0]: model=Blender, but rootfs.aduimg is signed for model=toaster"},
		{"criteria is not the version", "model=Toaster", `handler=aduflash/image:1,properties={"installedCriteria":"1.0"}`, exitcode.Invalid,
			`$.instructions.steps[0].handlerProperties.installedCriteria: is "1.0", but rootfs.aduimg is version 2.1.0`},
		{"another slot class", "model=Toaster", `handler=aduflash/image:1,properties={"slotClass":"kernel"}`, exitcode.Invalid,
			`$.instructions.steps[0].handlerProperties.slotClass: is "kernel", but rootfs.aduimg is signed for slot class rootfs`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(dir, "out.json")
			_ = os.Remove(out)
			var code int
			var stderr string
			inDir(t, dir, func() {
				code, _, stderr = run(t, append(append([]string{}, base...), "--compat", tc.compat, "--step", tc.step)...)
			})
			if code != tc.code || !strings.Contains(stderr, tc.msg) {
				t.Fatalf("exit %d, stderr %q; want exit %d and %q", code, stderr, tc.code, tc.msg)
			}
			data, err := os.ReadFile(out)
			if tc.code != 0 {
				if err == nil {
					t.Errorf("out.json written although the step is refused")
				}
				return
			}
			m, err := manifestgen.Parse(data)
			if err != nil {
				t.Fatal(err)
			}
			if hp, _ := json.Marshal(m.Instructions.Steps[0].HandlerProperties); string(hp) != `{"installedCriteria":"2.1.0","slotClass":"rootfs"}` {
				t.Errorf("handlerProperties %s, want the image's version and slot class", hp)
			}
		})
	}
}
