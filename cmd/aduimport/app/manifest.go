package app

import (
	"encoding/json"
	"fmt"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/aduflash/aduflash/cmd/internal/cliapp"
	"github.com/aduflash/aduflash/cmd/internal/exitcode"
	"github.com/aduflash/aduflash/cmd/internal/outfile"
	"github.com/aduflash/aduflash/cmd/internal/progress"
	"github.com/aduflash/aduflash/internal/imagestep"
	"github.com/aduflash/aduflash/manifestgen"
)

// progressThreshold is the total payload size from which manifest create shows hashing
// progress on stderr; below it hashing takes well under a second.
const progressThreshold = 64 << 20

func (e *env) manifestCommand() *cli.Command {
	return &cli.Command{
		Name:  "manifest",
		Usage: "create and check ADU import manifests (v5)",
		Description: `Import manifests describe an update to Azure Device Update: its identity, the devices
it is compatible with, how to install it and its payload files with sizes and SHA-256
hashes. "create" writes one the way "az iot du update init v5" does; "check" validates
manifests with the service's limits, which are stricter than the public JSON schema.
aduagent installs the steps with the handler aduflash/image:1 (see manifest create --help).

EXAMPLE:
   aduimport manifest create --provider Contoso --name Toaster --version 1.2.0 \
       --compat manufacturer=Contoso,model=Toaster \
       --step handler=aduflash/image:1 --file rootfs-1.2.0.aduimg
   aduimport manifest check Contoso.Toaster.1.2.0.importmanifest.json`,
		HideHelpCommand: true,
		Subcommands: []*cli.Command{
			e.manifestCreateCommand(),
			e.manifestCheckCommand(),
		},
	}
}

// orderedArgs records the values of the repeatable k=v flags of manifest create in
// command-line order, across flags: a --related-file belongs to the --file before it.
type orderedArgs struct {
	list []orderedArg
}

type orderedArg struct {
	flag, value string
}

// orderedFlag is one repeatable flag feeding an orderedArgs. Set never fails; the values are
// parsed in the action so that errors can name the flag and exit with a usage error.
type orderedFlag struct {
	name string
	to   *orderedArgs
}

func (f *orderedFlag) Set(v string) error {
	f.to.list = append(f.to.list, orderedArg{f.name, v})
	return nil
}

func (f *orderedFlag) String() string { return "" }

func (e *env) manifestCreateCommand() *cli.Command {
	rec := &orderedArgs{}
	ordered := func(name, usage string) cli.Flag {
		return &cli.GenericFlag{Name: name, Usage: usage, Value: &orderedFlag{name: name, to: rec}}
	}
	return &cli.Command{
		Name:      "create",
		Usage:     "write an import manifest (v5) for payload files",
		UsageText: "aduimport manifest create --provider P --name N --version V --compat k=v[,k=v...] --step ... [--file PATH[,...] [--related-file PATH[,...]]...]... [options]",
		Description: `Hashes the --file and --related-file payloads (SHA-256, one pass each, several files
at once) and writes the manifest to PROVIDER.NAME.VERSION.importmanifest.json in the
current directory, or to -o FILE (-o - writes to stdout). The manifest is validated
with the service's limits first; if it is invalid, every violation is listed, nothing
is written and the exit code is 1.

--compat, --step, --file and --related-file repeat. Their values are k=v lists split
at commas outside {…}, […] and "…", so JSON values may contain commas; put a plain
value in double quotes to keep a comma (description="a, b"). A --related-file
belongs to the --file before it; that file needs downloadHandler=ID. A step without
files= runs on every --file.

aduagent runs the handler aduflash/image:1 (and refuses the others): a step installs
one aduimg or MCUboot image into the spare slot of a class. Its handlerProperties:
   installedCriteria  what the device records the slot holds once the update is
                      confirmed; an update whose every step matches what the device
                      records is reported as installed, without a download. Default:
                      the image's version (MCUboot: 1.2.3+4, as imgtool writes it); a
                      raw file (allow_raw on the device) has none: give it
   slotClass          the slot class to write, e.g. rootfs, kernel, mcu. Default: the
                      class the aduimg image is signed for (needed when the device has
                      more than one class)
Each such step is checked against its image as aduagent checks it: the image's
compatibility must agree with every --compat that names the same property, slotClass
with the image's slot class, installedCriteria with the image's version, and no two
steps may write one slot class; otherwise nothing is written and the exit code is 1.

Steps for Microsoft's agents (microsoft/swupdate:1, microsoft/swupdate:2, microsoft/apt:1)
get handlerProperties.installedCriteria "1.0" if they have none (as az does; a warning
says so).

EXAMPLE:
   aduimport manifest create --provider Contoso --name Toaster --version 1.2.0 \
       --compat manufacturer=Contoso,model=Toaster \
       --step handler=aduflash/image:1 --file rootfs-1.2.0.aduimg

   aduimport manifest create --provider Contoso --name Toaster --version 1.3.0 \
       --compat manufacturer=Contoso,model=Toaster \
       --step 'handler=aduflash/image:1,files=rootfs-1.3.0.aduimg,properties={"installedCriteria":"1.3.0","slotClass":"rootfs"}' \
       --step 'handler=aduflash/image:1,files=zephyr-2.1.0.signed.bin,properties={"slotClass":"mcu"}' \
       --step provider=Contoso,name=Toaster.Bootloader,version=1.0.3 \
       --file 'rootfs-1.3.0.aduimg,downloadHandler=microsoft/delta:1' \
       --related-file 'delta-1.2.0-1.3.0.bin,properties={"microsoft.sourceFileHashAlgorithm":"sha256","microsoft.sourceFileHash":"..."}' \
       --file zephyr-2.1.0.signed.bin \
       --description "Toaster 1.3.0" -o toaster-1.3.0.importmanifest.json`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "provider", Usage: "update provider (updateId.provider; [a-zA-Z0-9.-], 1-64 characters)"},
			&cli.StringFlag{Name: "name", Usage: "update name (updateId.name; [a-zA-Z0-9.-], 1-64 characters)"},
			&cli.StringFlag{Name: "version", Usage: "update version (updateId.version; 2 to 4 numeric parts, e.g. 1.2.0)"},
			ordered("compat", "a compatibility object, `k=v[,k=v...]`; repeat for more objects"),
			ordered("step", "a step, `k=v[,k=v...]`: handler=H[,files=a;b][,properties=JSON][,description=D] (inline) or provider=P,name=N,version=V[,description=D] (reference); repeat for more"),
			ordered("file", "a payload file, `PATH[,k=v...]`: PATH[,properties=JSON][,downloadHandler=ID]; repeat for more"),
			ordered("related-file", "a related file of the preceding --file (e.g. a delta), `PATH[,k=v...]`: PATH[,properties=JSON]"),
			&cli.StringFlag{Name: "description", Usage: "update description (1-512 characters)"},
			&cli.BoolFlag{Name: "is-deployable", Value: true, Usage: "--is-deployable=false for an update that is only installed through another update's reference step"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write the manifest to `FILE` (- for stdout) instead of PROVIDER.NAME.VERSION.importmanifest.json", TakesFile: true},
			// Reproducible manifests and golden tests: createdDateTime instead of now.
			&cli.StringFlag{Name: "created", Hidden: true, Usage: "createdDateTime (RFC 3339) instead of the current time"},
		},
		Action: func(c *cli.Context) error { return e.manifestCreate(c, rec) },
	}
}

// manifestCreate is manifest create's action: the spec from the flags (in their order for
// rec's), the manifest built from it and checked against the images, written.
func (e *env) manifestCreate(c *cli.Context, rec *orderedArgs) error {
	spec, err := createSpec(c, rec)
	if err != nil {
		return err
	}
	m, err := e.buildManifest(c, spec)
	if err != nil {
		return err
	}
	return e.writeManifest(c, m)
}

// createSpec reads the spec of manifest create from its flags; what is missing or does not
// parse is a usage error.
func createSpec(c *cli.Context, rec *orderedArgs) (manifestgen.Spec, error) {
	var spec manifestgen.Spec
	if err := args(c, 0, 0, "no arguments"); err != nil {
		return spec, err
	}
	if err := need(c, "provider", "name", "version"); err != nil {
		return spec, err
	}
	spec.UpdateID = manifestgen.UpdateID{Provider: c.String("provider"), Name: c.String("name"), Version: c.String("version")}
	spec.Description = c.String("description")
	if c.IsSet("description") && spec.Description == "" {
		return spec, exitcode.Usagef("%s: --description must not be empty", c.Command.HelpName)
	}
	if c.IsSet("is-deployable") && !c.Bool("is-deployable") {
		f := false
		spec.IsDeployable = &f
	}
	for _, a := range rec.list {
		if err := addOrdered(&spec, a); err != nil {
			return spec, exitcode.WithCode(exitcode.Usage, fmt.Errorf("%s: %w", c.Command.HelpName, err))
		}
	}
	if len(spec.Compatibility) == 0 {
		return spec, exitcode.Usagef("%s: missing --compat", c.Command.HelpName)
	}
	if len(spec.Steps) == 0 {
		return spec, exitcode.Usagef("%s: missing --step", c.Command.HelpName)
	}
	return spec, nil
}

// addOrdered parses the value of one repeatable flag into spec: a --related-file goes to the
// --file before it.
func addOrdered(spec *manifestgen.Spec, a orderedArg) error {
	switch a.flag {
	case "compat":
		return appendParsed(&spec.Compatibility, manifestgen.ParseCompat, a.value)
	case "step":
		return appendParsed(&spec.Steps, manifestgen.ParseStep, a.value)
	case "file":
		return appendParsed(&spec.Files, manifestgen.ParseFile, a.value)
	case "related-file":
		if len(spec.Files) == 0 {
			if _, err := manifestgen.ParseRelatedFile(a.value); err != nil {
				return err
			}
			return fmt.Errorf("--related-file %s comes before any --file; it belongs to the --file before it", a.value)
		}
		last := &spec.Files[len(spec.Files)-1]
		return appendParsed(&last.Related, manifestgen.ParseRelatedFile, a.value)
	}
	return nil
}

// appendParsed appends parse(v) to list, or returns parse's error.
func appendParsed[T any](list *[]T, parse func(string) (T, error), v string) error {
	x, err := parse(v)
	if err == nil {
		*list = append(*list, x)
	}
	return err
}

// buildManifest builds the manifest of spec (hashing with progress on stderr for large
// payloads, at --created if given), prints Build's warnings, and completes and checks the
// aduflash/image:1 steps against their images.
func (e *env) buildManifest(c *cli.Context, spec manifestgen.Spec) (*manifestgen.Manifest, error) {
	opts := []manifestgen.Option{
		manifestgen.WithProgress(func(total int64) manifestgen.Meter {
			if total < progressThreshold {
				return nil
			}
			return progress.New(e.stderr, total, "hashing")
		}),
	}
	created, err := buildTime(c)
	if err != nil {
		return nil, err
	}
	if !created.IsZero() {
		opts = append(opts, manifestgen.WithCreated(created))
	}
	if err := imagestep.NameAdaptive(&spec); err != nil {
		return nil, err
	}
	m, warnings, err := manifestgen.Build(c.Context, spec, opts...)
	for _, w := range warnings {
		fmt.Fprintf(e.stderr, "aduimport: warning: %s\n", w)
	}
	if err == nil {
		err = imagestep.Complete(m, specPaths(spec))
	}
	return m, err
}

// writeManifest writes m to --output (- for stdout; default its own file name in the
// current directory) and says what it wrote.
func (e *env) writeManifest(c *cli.Context, m *manifestgen.Manifest) error {
	data, err := manifestgen.Marshal(m)
	if err != nil {
		return err
	}
	out := c.String("output")
	if out == "-" {
		_, err := e.stdout.Write(data)
		return err
	}
	if out == "" {
		out = m.FileName()
	}
	if err := outfile.WriteFile(out, data, 0o644); err != nil {
		return err
	}
	n, size := payloadFiles(m)
	fmt.Fprintf(e.stdout, "import manifest for %s written to %s (%d file(s), %s)\n", m.UpdateID, out, n, progress.Size(size))
	return nil
}

// specPaths maps the file names of a manifest built from spec to the files given.
func specPaths(spec manifestgen.Spec) func(name string) string {
	paths := map[string]string{}
	for _, f := range spec.Files {
		paths[filepath.Base(f.Path)] = f.Path
	}
	return func(name string) string { return paths[name] }
}

// payloadFiles counts m's files and related files and adds up their sizes.
func payloadFiles(m *manifestgen.Manifest) (n int, size int64) {
	for _, f := range m.Files {
		n, size = n+1, size+f.SizeInBytes
		for _, r := range f.RelatedFiles {
			n, size = n+1, size+r.SizeInBytes
		}
	}
	return n, size
}

// checkResult is one file's entry in manifest check --json.
type checkResult struct {
	File       string                  `json:"file"`
	Valid      bool                    `json:"valid"`
	Violations []manifestgen.Violation `json:"violations"`
	Error      string                  `json:"error,omitempty"`
}

func (e *env) manifestCheckCommand() *cli.Command {
	return &cli.Command{
		Name:      "check",
		Usage:     "validate import manifests (v5) with the service's limits",
		ArgsUsage: "FILE...",
		Description: `Checks each FILE and prints "FILE: ok", or one line per violation:
"FILE: $.json.path: message" (all of them, in document order). Exit code 0 if every
manifest is valid, 1 if any is invalid, 3 if any cannot be read. --json prints an
array of {"file", "valid", "violations": [{"path", "message"}], "error"} instead.

EXAMPLE:
   aduimport manifest check Contoso.Toaster.1.0.importmanifest.json
   aduimport manifest check --json *.importmanifest.json`,
		Flags: []cli.Flag{
			cliapp.JSONFlag("the results"),
		},
		Action: func(c *cli.Context) error {
			if err := args(c, 1, -1, "one or more manifest files"); err != nil {
				return err
			}
			var results []checkResult
			invalid, unreadable := 0, 0
			for _, name := range c.Args().Slice() {
				r := checkResult{File: name, Violations: []manifestgen.Violation{}}
				data, err := manifestgen.ReadFile(name)
				if err != nil {
					unreadable++
					r.Error = err.Error()
					if !c.Bool("json") {
						fmt.Fprintf(e.stderr, "aduimport: %v\n", err)
					}
					results = append(results, r)
					continue
				}
				if vs := manifestgen.Validate(data); len(vs) > 0 {
					invalid++
					r.Violations = vs
				} else {
					r.Valid = true
				}
				results = append(results, r)
				if c.Bool("json") {
					continue
				}
				if r.Valid {
					fmt.Fprintf(e.stdout, "%s: ok\n", name)
				}
				for _, v := range r.Violations {
					fmt.Fprintf(e.stdout, "%s: %s\n", name, v)
				}
			}
			if c.Bool("json") {
				enc := json.NewEncoder(e.stdout)
				enc.SetEscapeHTML(false)
				enc.SetIndent("", "  ")
				if err := enc.Encode(results); err != nil {
					return err
				}
			}
			var err error
			switch {
			case unreadable > 0:
				err = exitcode.WithCode(exitcode.IO, fmt.Errorf("%d of %d manifest(s) could not be read", unreadable, len(results)))
			case invalid > 0:
				err = exitcode.InvalidInput(fmt.Errorf("%d of %d manifest(s) invalid", invalid, len(results)))
			default:
				return nil
			}
			if c.Bool("json") {
				return cliapp.Silent(err)
			}
			return err
		},
	}
}
