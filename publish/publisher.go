package publish

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/aduflash/aduflash/internal/errkind"
)

// Publisher puts checked updates into a Device Update instance through a blob store.
type Publisher struct {
	Store   *Store
	Service *Service
	Upload  UploadOptions
	// FriendlyName is the update's name in the portal ("": none).
	FriendlyName string
	// Wait: poll the import operation until it ends; Seen, if not nil, is told each answer.
	Wait bool
	Seen func(*Operation)
	// Uploaded, if not nil, is told each file (the manifest last) once it is in the store.
	Uploaded func(Uploaded)
}

// Result is what Publish did.
type Result struct {
	Update   string     `json:"update"` // provider.name.version
	Files    []Uploaded `json:"files"`
	Manifest Uploaded   `json:"manifest"`
	// OperationURL is the import operation's; Operation its last state (with Wait).
	OperationURL string     `json:"operationUrl"`
	Operation    *Operation `json:"operation,omitempty"`
}

// Publish checks that the instance does not have u yet (ErrUpdateExists, before any
// upload), uploads u's files and then its manifest, starts the import and, with Wait,
// waits for its end. A Failed import is an *OperationError with the Result.
func (p *Publisher) Publish(ctx context.Context, u *Update) (*Result, error) {
	res := &Result{Update: u.ID.String(), Files: []Uploaded{}}
	exists, err := p.Service.UpdateExists(ctx, u.ID)
	if err != nil {
		return res, fmt.Errorf("is %s imported already: %w", u.ID, err)
	}
	if exists {
		return res, fmt.Errorf("%w: %s", ErrUpdateExists, u.ID)
	}
	if err := p.Store.Ensure(ctx); err != nil {
		return res, err
	}
	item, err := p.uploadAll(ctx, u, res)
	if err != nil {
		return res, err
	}
	if res.OperationURL, err = p.Service.Import(ctx, []ImportItem{item}); err != nil {
		return res, fmt.Errorf("import %s: %w", u.ID, err)
	}
	if !p.Wait {
		return res, nil
	}
	res.Operation, err = p.Service.Wait(ctx, res.OperationURL, p.Seen)
	return res, err
}

// uploadAll uploads u's files, then its manifest (so that a manifest in the store means
// its files are), and returns the import request for them.
func (p *Publisher) uploadAll(ctx context.Context, u *Update, res *Result) (ImportItem, error) {
	item := ImportItem{FriendlyName: p.FriendlyName, Files: []FileRef{}}
	for _, f := range u.Files {
		up, err := p.upload(ctx, u, f)
		if err != nil {
			return item, err
		}
		res.Files = append(res.Files, up)
		item.Files = append(item.Files, FileRef{Filename: f.Name, URL: up.URL})
	}
	up, err := p.upload(ctx, u, u.Manifest)
	if err != nil {
		return item, err
	}
	res.Manifest = up
	item.ImportManifest = ManifestRef{URL: up.URL, SizeInBytes: u.Manifest.Size, Hashes: map[string]string{"sha256": u.Manifest.SHA256}}
	return item, nil
}

func (p *Publisher) upload(ctx context.Context, u *Update, f LocalFile) (Uploaded, error) {
	up, err := p.Store.Upload(ctx, BlobName(u, f.Name), f, p.Upload)
	if err == nil && p.Uploaded != nil {
		p.Uploaded(up)
	}
	return up, err
}

// ErrTokenFile: the token file holds no usable bearer token.
var ErrTokenFile = errkind.New(errkind.Input, "publish: bad token file")

// maxTokenSize bounds a token file (Entra ID access tokens are a few KiB).
const maxTokenSize = 64 << 10

// TokenFile is a credential that sends the bearer token in a file (aduhub's api-token, or
// one `az account get-access-token` printed), read once; it is taken to stay valid for an
// hour.
func TokenFile(path string) (azcore.TokenCredential, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("token file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if len(b) > maxTokenSize || tok == "" || strings.ContainsAny(tok, " \t\r\n") {
		return nil, fmt.Errorf("%w: %s: want one line with the token", ErrTokenFile, path)
	}
	return staticToken(tok), nil
}

type staticToken string

func (t staticToken) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{Token: string(t), ExpiresOn: time.Now().Add(time.Hour)}, nil
}
