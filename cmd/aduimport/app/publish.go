package app

import (
	"fmt"
	"net/url"
	"os"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/urfave/cli/v2"

	"github.com/aduflash/aduflash/cmd/internal/cliapp"
	"github.com/aduflash/aduflash/cmd/internal/exitcode"
	"github.com/aduflash/aduflash/cmd/internal/progress"
	"github.com/aduflash/aduflash/manifestgen"
	"github.com/aduflash/aduflash/publish"
)

// connStringEnv names the storage connection string publish uses with --container.
const connStringEnv = "AZURE_STORAGE_CONNECTION_STRING"

func (e *env) publishCommand() *cli.Command {
	return &cli.Command{
		Name:      "publish",
		Usage:     "upload an update to Blob Storage and import it into Device Update (or aduhub)",
		ArgsUsage: "FILE...",
		UsageText: "aduimport publish --manifest M.importmanifest.json --endpoint URL --instance I (--container C [--storage-account A] | --blob-url URL) [options] FILE...",
		Description: `Checks the import manifest with the service's rules and the FILEs against it (every file
it names given, none other, sizes and SHA-256 as it says) before anything is sent; asks the
instance whether it has the update already (then exit 4, nothing uploaded); uploads the
files and then the manifest to a Blob Storage container under PROVIDER/NAME/VERSION/ (blocks
of --block-size, --parallel at a time, with a progress bar; a blob already there with the
same length and hash is not sent again, and an upload that was cut resumes from the blocks
it staged); then starts the import (POST updates:import with read-only SAS URLs valid for
3 hours) and, with --wait, polls the operation until it succeeds or fails, printing the
service's error with its details.

The Device Update API (--endpoint https://ACCOUNT.api.adu.microsoft.com, or aduhub serve's
http://127.0.0.1:8080) takes a bearer token: --token-file FILE (aduhub's DIR/api-token),
else azidentity's default chain: environment (AZURE_TENANT_ID, AZURE_CLIENT_ID and
AZURE_CLIENT_SECRET or AZURE_CLIENT_CERTIFICATE_PATH), workload identity (GitHub Actions,
Azure Pipelines, Kubernetes: AZURE_FEDERATED_TOKEN_FILE), managed identity, Azure CLI
login. The identity needs the role "Device Update Content Administrator" on the account.

The container is --blob-url URL (a container URL; with a SAS query of permissions r, c and
w it is used as it is), or --container C with $AZURE_STORAGE_CONNECTION_STRING (Azurite's
development account in tests), or --container C --storage-account A
(https://A.blob.core.windows.net/C). Without a SAS or connection string, the default chain
reaches the container ("Storage Blob Data Contributor" on it) and the read URLs are user
delegation SAS ("Storage Blob Delegator" on the storage account: the key that signs them is
the account's). A missing container is created.

Request logs of the Azure SDK: AZURE_SDK_GO_LOGGING=all. Exit codes: 0 imported (or, without
--wait, import started), 1 invalid manifest, files that do not match it, or an import the
service refused, 2 usage error, 3 I/O, network, credentials or service error, 4 the update
is in the instance already.

EXAMPLE:
   aduimport publish --manifest Contoso.Toaster.1.2.0.importmanifest.json rootfs-1.2.0.aduimg \
       --endpoint https://contoso.api.adu.microsoft.com --instance toasters \
       --storage-account contosoupdates --container updates --wait
   aduimport publish --manifest Contoso.Toaster.1.2.0.importmanifest.json rootfs-1.2.0.aduimg \
       --endpoint http://127.0.0.1:8080 --instance aduhub --token-file aduhub-data/api-token \
       --container updates --wait        (aduhub, Azurite in $AZURE_STORAGE_CONNECTION_STRING)`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "manifest", Usage: "the import manifest `FILE` (aduimport manifest create writes it)", TakesFile: true},
			&cli.StringFlag{Name: "endpoint", Usage: "the Device Update account's `URL`, https://ACCOUNT.api.adu.microsoft.com"},
			&cli.StringFlag{Name: "instance", Usage: "the Device Update `INSTANCE`"},
			&cli.StringFlag{Name: "storage-account", Usage: "the storage `ACCOUNT` of --container (https://ACCOUNT.blob.core.windows.net)"},
			&cli.StringFlag{Name: "container", Usage: "the blob `CONTAINER` (in --storage-account, or the account of $" + connStringEnv + ")"},
			&cli.StringFlag{Name: "blob-url", Usage: "the container's `URL` instead, with a SAS (permissions r, c, w) or reached with the default credential"},
			&cli.StringFlag{Name: "friendly-name", Usage: "the update's friendly `NAME` in the portal (1-512 characters)"},
			&cli.StringFlag{Name: "api-version", Value: publish.DefaultAPIVersion, Usage: "the Device Update API `VERSION`"},
			&cli.BoolFlag{Name: "wait", Usage: "wait until the import succeeds or fails"},
			cliapp.JSONFlag("the result"),
			&cli.StringFlag{Name: "token-file", Usage: "send the bearer token in `FILE` to the Device Update API instead of the default credential chain", TakesFile: true},
			&cli.Int64Flag{Name: "block-size", Value: publish.DefaultBlockSize, Usage: "upload blocks of `BYTES`"},
			&cli.IntFlag{Name: "parallel", Value: publish.DefaultParallel, Usage: "blocks uploaded at a time (`N`)"},
			// Tests: poll the operation this often instead of every 5 s.
			&cli.DurationFlag{Name: "poll", Hidden: true, Usage: "poll the operation every `DURATION`"},
		},
		Action: e.publish,
	}
}

// publishReport is publish's --json output.
type publishReport struct {
	*publish.Result
	OK       bool   `json:"ok"`
	ExitCode int    `json:"exitCode"`
	Error    string `json:"error,omitempty"`
}

func (e *env) publish(c *cli.Context) error {
	if err := publishFlags(c); err != nil {
		return err
	}
	res, err := e.checkAndPublish(c)
	if c.Bool("json") {
		rep := &publishReport{Result: res}
		return cliapp.JSONVerdict(e.stdout, rep, err, func(ok bool, code int, msg string) { rep.OK, rep.ExitCode, rep.Error = ok, code, msg })
	}
	if err == nil {
		e.printPublished(res)
	}
	return err
}

// checkAndPublish builds the publisher, checks the manifest and the files, then publishes
// them with a progress bar of the upload.
func (e *env) checkAndPublish(c *cli.Context) (*publish.Result, error) {
	p, err := e.publisher(c) // no request yet: a bad endpoint or URL is refused before the files are read
	if err != nil {
		return nil, err
	}
	u, err := publish.Check(c.Context, c.String("manifest"), c.Args().Slice(), e.hashMeter(c))
	if err != nil {
		return nil, err
	}
	bar := progress.New(progress.Output(e.stderr, c.Bool("json")), uploadSize(u), "uploading")
	p.Upload.Progress = bar.Add
	manifestBlob := publish.BlobName(u, u.Manifest.Name)
	p.Uploaded = func(up publish.Uploaded) { // the manifest goes last: the uploads are done
		if up.Blob == manifestBlob {
			bar.Finish()
		}
	}
	res, err := p.Publish(c.Context, u)
	bar.End(err)
	return res, err
}

// publishFlags checks what publish needs besides the files.
func publishFlags(c *cli.Context) error {
	if err := args(c, 1, -1, "the files of the import manifest"); err != nil {
		return err
	}
	if err := need(c, "manifest", "endpoint", "instance"); err != nil {
		return err
	}
	if c.IsSet("blob-url") == c.IsSet("container") {
		return exitcode.Usagef("%s: give --container C (with --storage-account A or $%s) or --blob-url URL", c.Command.HelpName, connStringEnv)
	}
	if c.IsSet("container") && !c.IsSet("storage-account") && os.Getenv(connStringEnv) == "" {
		return exitcode.Usagef("%s: --container %s: which account? give --storage-account A or $%s", c.Command.HelpName, c.String("container"), connStringEnv)
	}
	if n := len([]rune(c.String("friendly-name"))); c.IsSet("friendly-name") && (n < 1 || n > 512) {
		return exitcode.Usagef("%s: --friendly-name: 1 to 512 characters, got %d", c.Command.HelpName, n)
	}
	if bs := c.Int64("block-size"); bs < 1<<10 || bs > publish.MaxBlockSize {
		return exitcode.Usagef("%s: --block-size %d: from 1 KiB to %d MiB", c.Command.HelpName, bs, publish.MaxBlockSize>>20)
	}
	if n := c.Int("parallel"); n < 1 || n > 64 {
		return exitcode.Usagef("%s: --parallel %d: from 1 to 64", c.Command.HelpName, n)
	}
	return nil
}

// hashMeter shows hashing progress for large payloads, as manifest create does.
func (e *env) hashMeter(c *cli.Context) func(total int64) manifestgen.Meter {
	return func(total int64) manifestgen.Meter {
		if total < progressThreshold {
			return nil
		}
		return progress.New(progress.Output(e.stderr, c.Bool("json")), total, "checking")
	}
}

// publisher builds the Publisher of publish's flags: the API with its credential, the
// blob store with its own.
func (e *env) publisher(c *cli.Context) (*publish.Publisher, error) {
	apiCred, err := apiCredential(c)
	if err != nil {
		return nil, err
	}
	svc, err := publish.NewService(c.String("endpoint"), c.String("instance"), apiCred,
		&publish.ServiceOptions{APIVersion: c.String("api-version"), PollInterval: c.Duration("poll")})
	if err != nil {
		return nil, err
	}
	store, err := blobStore(c)
	if err != nil {
		return nil, err
	}
	p := &publish.Publisher{Store: store, Service: svc, FriendlyName: c.String("friendly-name"), Wait: c.Bool("wait"),
		Upload: publish.UploadOptions{BlockSize: c.Int64("block-size"), Parallel: c.Int("parallel")}}
	if !c.Bool("json") {
		last := ""
		p.Seen = func(op *publish.Operation) {
			if op.Status != last {
				last = op.Status
				fmt.Fprintf(e.stderr, "import operation %s: %s\n", op.OperationID, op.Status)
			}
		}
	}
	return p, nil
}

// apiCredential is --token-file's token, else the default chain.
func apiCredential(c *cli.Context) (azcore.TokenCredential, error) {
	if f := c.String("token-file"); f != "" {
		return publish.TokenFile(f)
	}
	return defaultCredential()
}

func defaultCredential() (azcore.TokenCredential, error) {
	cred, err := azidentity.NewDefaultAzureCredential(nil)
	if err != nil {
		return nil, fmt.Errorf("Azure credential: %w", err)
	}
	return cred, nil
}

// blobStore is the container of --blob-url (a SAS, or the default credential) or of
// --container (the connection string, or --storage-account with the default credential).
func blobStore(c *cli.Context) (*publish.Store, error) {
	containerURL := c.String("blob-url")
	if containerURL == "" {
		if cs := os.Getenv(connStringEnv); cs != "" {
			return publish.StoreFromConnectionString(cs, c.String("container"), nil)
		}
		containerURL = "https://" + c.String("storage-account") + ".blob.core.windows.net/" + url.PathEscape(c.String("container"))
	}
	u, err := url.Parse(containerURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, exitcode.Usagef("%s: --blob-url %q: not an http(s) container URL", c.Command.HelpName, containerURL)
	}
	if u.Query().Has("sig") {
		return publish.StoreFromSAS(containerURL, nil)
	}
	cred, err := defaultCredential()
	if err != nil {
		return nil, err
	}
	return publish.StoreWithCredential(containerURL, cred, nil)
}

// uploadSize is the bytes publish uploads at most: the files and the manifest.
func uploadSize(u *publish.Update) int64 {
	n := u.Manifest.Size
	for _, f := range u.Files {
		n += f.Size
	}
	return n
}

// printPublished says what was uploaded and where the import stands.
func (e *env) printPublished(res *publish.Result) {
	for _, up := range append(res.Files, res.Manifest) {
		switch {
		case up.Existed:
			fmt.Fprintf(e.stdout, "%s: in blob %s already, not sent\n", up.Name, up.Blob)
		case up.Resumed > 0:
			fmt.Fprintf(e.stdout, "%s: uploaded to blob %s (%s sent, %s staged before)\n", up.Name, up.Blob, progress.Size(up.Sent), progress.Size(up.Resumed))
		default:
			fmt.Fprintf(e.stdout, "%s: uploaded to blob %s (%s)\n", up.Name, up.Blob, progress.Size(up.Sent))
		}
	}
	if res.Operation == nil {
		fmt.Fprintf(e.stdout, "import of %s started: %s\n", res.Update, res.OperationURL)
		return
	}
	fmt.Fprintf(e.stdout, "%s imported (operation %s)\n", res.Update, res.Operation.OperationID)
}
