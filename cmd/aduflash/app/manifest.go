package app

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/aduflash/aduflash/adu"
	"github.com/aduflash/aduflash/cmd/internal/cliapp"
	"github.com/aduflash/aduflash/cmd/internal/exitcode"
)

func (e *env) manifestCommand() *cli.Command {
	return &cli.Command{
		Name:  "manifest",
		Usage: "check Device Update service manifests and their signatures offline",
		Description: `Exit codes: 0 ok, 1 failed verification or invalid input, 2 usage error, 3 unreadable file.

EXAMPLE:
   aduflash manifest verify --manifest manifest.json --signature manifest.sig.jws`,
		Subcommands: []*cli.Command{e.manifestVerifyCommand()},
	}
}

func (e *env) manifestVerifyCommand() *cli.Command {
	return &cli.Command{
		Name:  "verify",
		Usage: "verify an update manifest against its updateManifestSignature (JWS) and the ADU root keys",
		Description: `--manifest holds the update manifest exactly as the service sent it: the value of the
twin's service.updateManifest string, unescaped, with no added newline (the signature covers
these bytes). --signature holds service.updateManifestSignature, the compact JWS (surrounding
white space ignored). Instead of both, --twin takes a twin document (full GET, desired patch,
or the service object) and uses its updateManifest and updateManifestSignature.

The signing key carried in the JWS header must be signed by a trusted root key named by its
kid: the two built-in production roots (ADU.200702.R, ADU.200703.R) and those of --root-keys
(a JSON list of {"kid","n","e"} in the format of the ADU rootkeys.json). Then the JWS must be
signed by that signing key and carry the SHA-256 of the manifest bytes. The verdict names the
root and signing key ids, or the step that failed. After a good signature the manifest is
parsed. The signature verdict stands on its own: a manifest with a good signature whose
manifestVersion this agent does not install (it installs 4 and 5) is "signature valid, not
installable by this agent", exit 0; with --installable that exits 1. The JSON has
signature_valid, installable and not_installable (why).

Exit codes: 0 verified; 1 not verified (or the manifest or a root-key file is invalid, or not
installable with --installable); 2 usage error; 3 a file cannot be read.

EXAMPLE:
   aduflash manifest verify --manifest manifest.json --signature manifest.sig.jws
   aduflash manifest verify --twin desired.json --root-keys rootkeys_test.json --json
   aduflash manifest verify --manifest manifest.json --signature manifest.sig.jws --installable`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "manifest", Aliases: []string{"m"}, Usage: "update manifest `FILE` (the exact updateManifest string)", TakesFile: true},
			&cli.StringFlag{Name: "signature", Aliases: []string{"s"}, Usage: "signature `FILE` (the updateManifestSignature compact JWS)", TakesFile: true},
			&cli.StringFlag{Name: "twin", Usage: "twin document `FILE` carrying both, instead of --manifest and --signature", TakesFile: true},
			&cli.StringSliceFlag{Name: "root-keys", Usage: "extra trusted root keys `FILE` (JSON list like rootkeys.json; repeatable)", TakesFile: true},
			&cli.BoolFlag{Name: "installable", Usage: "also fail (exit 1) when this agent would not install the manifest (its manifestVersion)"},
			cliapp.JSONFlag("the verdict"),
		},
		Action: e.manifestVerify,
	}
}

type manifestVerdict struct {
	cliapp.Outcome
	Manifest        string `json:"manifest"`
	Signature       string `json:"signature,omitempty"`
	RootKID         string `json:"root_kid,omitempty"`
	RootSource      string `json:"root_source,omitempty"`
	SigningKID      string `json:"signing_kid,omitempty"`
	SHA256          string `json:"sha256,omitempty"`
	UpdateID        string `json:"update_id,omitempty"`
	ManifestVersion string `json:"manifest_version,omitempty"`
	SignatureValid  bool   `json:"signature_valid"`
	Installable     bool   `json:"installable"`
	NotInstallable  string `json:"not_installable,omitempty"`
	Steps           int    `json:"steps,omitempty"`
	Files           int    `json:"files,omitempty"`
	Detached        string `json:"detached_manifest_file_id,omitempty"`
	FailedStep      string `json:"failed_step,omitempty"`
	ERC             string `json:"extended_result_code,omitempty"`
}

func (e *env) manifestVerify(c *cli.Context) error {
	if err := cliapp.Args(c, 0, 0, "no arguments"); err != nil {
		return err
	}
	twin := c.String("twin")
	if twin != "" && (c.String("manifest") != "" || c.String("signature") != "") {
		return exitcode.Usagef("%s: --twin replaces --manifest and --signature", c.Command.HelpName)
	}
	if twin == "" {
		if err := cliapp.Need(c, "manifest", "signature"); err != nil {
			return err
		}
	}
	res := &manifestVerdict{Manifest: c.String("manifest"), Signature: c.String("signature")}
	if twin != "" {
		res.Manifest = twin
	}
	err := e.doManifestVerify(c, res)
	if c.Bool("json") {
		return cliapp.JSONVerdict(e.stdout, res, err, res.Mark)
	}
	if err != nil {
		return err
	}
	if !res.Installable {
		fmt.Fprintf(e.stdout, "VERIFIED %s: signature valid, not installable by this agent (%s)\n", res.Manifest, res.NotInstallable)
	} else {
		fmt.Fprintf(e.stdout, "VERIFIED %s\n", res.Manifest)
	}
	fmt.Fprintf(e.stdout, "  root key:    %s (%s)\n", res.RootKID, res.RootSource)
	fmt.Fprintf(e.stdout, "  signing key: %s\n", res.SigningKID)
	fmt.Fprintf(e.stdout, "  sha256:      %s\n", res.SHA256)
	switch {
	case !res.Installable:
	case res.Detached != "":
		fmt.Fprintf(e.stdout, "  update:      %s (manifest v%s, detached: the full manifest is file %s)\n", res.UpdateID, res.ManifestVersion, res.Detached)
	default:
		fmt.Fprintf(e.stdout, "  update:      %s (manifest v%s, %s, %s)\n", res.UpdateID, res.ManifestVersion, plural(res.Steps, "step"), plural(res.Files, "file"))
	}
	return nil
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func (e *env) doManifestVerify(c *cli.Context, res *manifestVerdict) error {
	var manifest []byte
	var jws string
	if p := c.String("twin"); p != "" {
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		svc, err := serviceFromTwin(data)
		if err != nil {
			return exitcode.InvalidInput(fmt.Errorf("%s: %w", p, err))
		}
		manifest, jws = []byte(svc.UpdateManifest), svc.UpdateManifestSignature
		if len(manifest) == 0 || jws == "" {
			return exitcode.InvalidInput(fmt.Errorf("%s: no updateManifest and updateManifestSignature (a cancel?)", p))
		}
	} else {
		var err error
		if manifest, err = os.ReadFile(res.Manifest); err != nil {
			return err
		}
		sig, err := os.ReadFile(res.Signature)
		if err != nil {
			return err
		}
		jws = strings.TrimSpace(string(sig))
	}
	opts := adu.VerifyOptions{}
	sources := map[string]string{}
	for _, p := range c.StringSlice("root-keys") {
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		roots, err := adu.ParseRootKeys(data)
		if err != nil {
			return exitcode.InvalidInput(fmt.Errorf("%s: %w", p, err))
		}
		for _, r := range roots {
			sources[r.KID] = p
		}
		opts.Roots = append(opts.Roots, roots...)
	}
	m, v, err := adu.VerifyManifest(manifest, jws, opts)
	if v != nil {
		res.SignatureValid = true
		res.RootKID, res.SigningKID = v.RootKID, v.SigningKID
		res.SHA256 = base64.StdEncoding.EncodeToString(v.ManifestSHA256)
		res.RootSource = "built-in"
		if s, ok := sources[v.RootKID]; ok {
			res.RootSource = s
		}
	}
	if v != nil && errors.Is(err, adu.ErrUnsupportedManifestVersion) {
		return notInstallable(c, res, manifest)
	}
	if err != nil {
		var ve *adu.VerifyError
		if errors.As(err, &ve) {
			res.RootKID, res.SigningKID, res.FailedStep = ve.RootKID, ve.SigningKID, ve.Step
			res.ERC = ve.ExtendedResultCode().String()
		}
		msg := "NOT VERIFIED: " + err.Error()
		if errors.Is(err, adu.ErrHashMismatch) && bytes.HasSuffix(manifest, []byte("\n")) {
			if _, err2 := adu.Verify(bytes.TrimRight(manifest, "\r\n"), jws, opts); err2 == nil {
				msg += " (the file ends with a line break the service did not send; without it the manifest verifies — store the exact string)"
			}
		}
		return exitcode.InvalidInput(fmt.Errorf("%s: %s", res.Manifest, msg))
	}
	res.Installable = true
	res.UpdateID = m.UpdateID.String()
	res.ManifestVersion = m.ManifestVersion
	res.Steps, res.Files, res.Detached = len(m.Steps), len(m.Files), m.DetachedManifestFileID
	return nil
}

// notInstallable records a good signature over a manifest whose manifestVersion this agent
// does not install: a verdict on the signature (nil), or with --installable a failure.
func notInstallable(c *cli.Context, res *manifestVerdict, manifest []byte) error {
	res.ManifestVersion = adu.ManifestVersionOf(manifest)
	have := "manifestVersion " + res.ManifestVersion
	if res.ManifestVersion == "" {
		have = "no manifestVersion"
	}
	res.NotInstallable = fmt.Sprintf("%s; supported %d, %d", have, adu.MinManifestVersion, adu.MaxManifestVersion)
	if c.Bool("installable") {
		return exitcode.InvalidInput(fmt.Errorf("%s: signature valid, not installable by this agent (%s)", res.Manifest, res.NotInstallable))
	}
	return nil
}

// serviceFromTwin reads the service object from a twin document or takes the document as the
// service object itself.
func serviceFromTwin(data []byte) (*adu.ServiceProperties, error) {
	d, err := adu.ParseDesired(data)
	if err == nil && d.Service != nil {
		return d.Service, nil
	}
	if s, err2 := adu.ParseServiceProperties(data); err2 == nil && s.UpdateManifest != "" {
		return s, nil
	}
	if err == nil {
		err = errors.New("no deviceUpdate.service in the twin document")
	}
	return nil, err
}
