package publish

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/sas"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/service"
)

// Upload defaults: blocks of 8 MiB, four at a time (32 MiB of buffers), and read URLs valid
// for 3 hours (as az iot du update stage makes them): the service reads the files while it
// imports.
const (
	DefaultBlockSize = 8 << 20
	DefaultParallel  = 4
	MaxBlockSize     = 100 << 20 // the most we allow; the service takes up to 4000 MiB
	readURLLifetime  = 3 * time.Hour
	// sha256Metadata is the blob metadata Store sets to the file's SHA-256 (base64).
	sha256Metadata = "sha256"
)

// Store is a Blob Storage container the files of updates are uploaded to.
type Store struct {
	c *container.Client
	// readURL returns a URL the Device Update service can read the blob at.
	readURL func(ctx context.Context, b *blockblob.Client) (string, error)
}

// StoreFromConnectionString is the container name of the storage account a connection
// string names (AZURE_STORAGE_CONNECTION_STRING; Azurite's development account); read URLs
// are SAS signed with its key.
func StoreFromConnectionString(connStr, name string, o *container.ClientOptions) (*Store, error) {
	c, err := container.NewClientFromConnectionString(connStr, name, o)
	if err != nil {
		return nil, fmt.Errorf("storage connection string: %w", err)
	}
	return &Store{c: c, readURL: sharedKeyURL}, nil
}

// StoreFromSAS is the container at containerURL, whose query is a SAS with read, create
// and write permissions; read URLs carry the same SAS.
func StoreFromSAS(containerURL string, o *container.ClientOptions) (*Store, error) {
	c, err := container.NewClientWithNoCredential(containerURL, o)
	if err != nil {
		return nil, fmt.Errorf("blob URL: %w", err)
	}
	return &Store{c: c, readURL: func(_ context.Context, b *blockblob.Client) (string, error) { return b.URL(), nil }}, nil
}

// StoreWithCredential is the container at containerURL reached with cred (the identity
// needs "Storage Blob Data Contributor" on it); read URLs are user delegation SAS, valid for
// 3 hours.
func StoreWithCredential(containerURL string, cred azcore.TokenCredential, o *container.ClientOptions) (*Store, error) {
	c, err := container.NewClient(containerURL, cred, o)
	if err != nil {
		return nil, fmt.Errorf("blob URL: %w", err)
	}
	parts, err := blob.ParseURL(containerURL)
	if err != nil {
		return nil, fmt.Errorf("blob URL: %w", err)
	}
	parts.ContainerName, parts.BlobName = "", ""
	svc, err := service.NewClient(parts.String(), cred, (*service.ClientOptions)(o))
	if err != nil {
		return nil, fmt.Errorf("blob URL: %w", err)
	}
	d := &delegation{svc: svc}
	return &Store{c: c, readURL: d.url}, nil
}

// Ensure creates the container if it does not exist (a SAS for one container cannot: then
// the container must be there).
func (s *Store) Ensure(ctx context.Context) error {
	_, err := s.c.GetProperties(ctx, nil)
	if bloberror.HasCode(err, bloberror.ContainerNotFound) {
		_, err = s.c.Create(ctx, nil)
		if bloberror.HasCode(err, bloberror.ContainerAlreadyExists) {
			err = nil
		}
	}
	if err != nil {
		return redact(fmt.Errorf("container %s: %w", s.c.URL(), err))
	}
	return nil
}

// URL is the container's URL.
func (s *Store) URL() string { return s.c.URL() }

// sharedKeyURL signs a read SAS with the account key.
func sharedKeyURL(_ context.Context, b *blockblob.Client) (string, error) {
	return b.BlobClient().GetSASURL(sas.BlobPermissions{Read: true}, time.Now().Add(readURLLifetime), nil)
}

// delegation signs read SAS with one user delegation key, fetched on first use.
type delegation struct {
	svc  *service.Client
	once sync.Once
	cred *service.UserDelegationCredential
	err  error
}

func (d *delegation) url(ctx context.Context, b *blockblob.Client) (string, error) {
	d.once.Do(func() {
		start, expiry := time.Now().UTC().Add(-5*time.Minute), time.Now().UTC().Add(readURLLifetime)
		d.cred, d.err = d.svc.GetUserDelegationCredential(ctx, service.KeyInfo{
			Start: to.Ptr(start.Format(sas.TimeFormat)), Expiry: to.Ptr(expiry.Format(sas.TimeFormat))}, nil)
	})
	if d.err != nil {
		return "", fmt.Errorf("user delegation key for read URLs: %w", d.err)
	}
	parts, err := blob.ParseURL(b.URL())
	if err != nil {
		return "", err
	}
	q, err := sas.BlobSignatureValues{Protocol: sas.ProtocolHTTPS, ExpiryTime: time.Now().UTC().Add(readURLLifetime),
		Permissions: to.Ptr(sas.BlobPermissions{Read: true}).String(), ContainerName: parts.ContainerName, BlobName: parts.BlobName,
	}.SignWithUserDelegation(d.cred)
	if err != nil {
		return "", err
	}
	parts.SAS = q
	return parts.String(), nil
}

// UploadOptions tune Upload. Zero values take the defaults.
type UploadOptions struct {
	BlockSize int64
	Parallel  int
	// Progress, if not nil, is told the bytes of each block once it is staged or found
	// staged already, and those of a whole blob found already there.
	Progress func(n int64)
}

// Uploaded says what Upload did with one file.
type Uploaded struct {
	Name string `json:"name"` // the file's name in the import manifest
	Blob string `json:"blob"` // the blob's name in the container
	// URL is where the Device Update service reads it (with a SAS), not for logs.
	URL string `json:"-"`
	// Existed: a blob with the same length and hash was there; nothing was sent.
	Existed bool `json:"existed"`
	// Sent is the bytes sent in this upload; Resumed those of blocks a cut upload had staged.
	Sent    int64 `json:"sent"`
	Resumed int64 `json:"resumed"`
}

// BlobName is where an update's file goes in the container: PROVIDER/NAME/VERSION/FILE.
func BlobName(u *Update, file string) string {
	return path.Join(u.ID.Provider, u.ID.Name, u.ID.Version, file)
}

// Upload puts f into the blob name as a block blob, unless a blob with its length and
// Content-MD5 or sha256 metadata is there already; the blocks of a cut upload that are
// staged already are not sent again.
func (s *Store) Upload(ctx context.Context, name string, f LocalFile, o UploadOptions) (Uploaded, error) {
	o = o.withDefaults()
	b := s.c.NewBlockBlobClient(name)
	up := Uploaded{Name: f.Name, Blob: name}
	var err error
	if up.Existed, err = sameBlob(ctx, b, f); err != nil {
		return up, redact(fmt.Errorf("blob %s: %w", name, err))
	}
	if up.Existed {
		o.progress(f.Size)
	} else if up.Sent, up.Resumed, err = s.putBlocks(ctx, b, f, o); err != nil {
		return up, redact(fmt.Errorf("upload %s to blob %s: %w", f.Path, name, err))
	}
	if up.URL, err = s.readURL(ctx, b); err != nil {
		return up, redact(fmt.Errorf("blob %s: %w", name, err))
	}
	return up, nil
}

// sasSignature matches the signature of a SAS in a URL.
var sasSignature = regexp.MustCompile(`([?&]sig=)[^&\s"']+`)

// redacted is an error whose message shows no SAS signature (a network error quotes the
// whole URL), so that CI logs do not hand out write access to the container.
type redacted struct{ err error }

func (r redacted) Error() string {
	msg := r.err.Error()
	var re *azcore.ResponseError
	if errors.As(r.err, &re) {
		msg = strings.Replace(msg, re.Error(), oneLine(re), 1)
	}
	return sasSignature.ReplaceAllString(msg, "${1}REDACTED")
}

// storageMessage is the first line of the <Message> of a storage error answer.
var storageMessage = regexp.MustCompile(`<Message>([^<\r\n]*)`)

// oneLine is azcore's many-line error of a storage answer as one line: the request, the
// status, the error code and the storage service's message.
func oneLine(re *azcore.ResponseError) string {
	msg := fmt.Sprintf("%d %s", re.StatusCode, re.ErrorCode)
	if resp := re.RawResponse; resp != nil {
		if resp.Request != nil {
			msg = resp.Request.Method + " " + resp.Request.URL.Path + ": " + msg
		}
		if b, err := runtime.Payload(resp); err == nil {
			if m := storageMessage.FindSubmatch(b); m != nil {
				msg += ": " + strings.TrimSpace(string(m[1]))
			}
		}
	}
	return msg
}
func (r redacted) Unwrap() error { return r.err }

func redact(err error) error { return redacted{err} }

func (o UploadOptions) withDefaults() UploadOptions {
	if o.BlockSize <= 0 {
		o.BlockSize = DefaultBlockSize
	}
	if o.Parallel <= 0 {
		o.Parallel = DefaultParallel
	}
	return o
}

func (o UploadOptions) progress(n int64) {
	if o.Progress != nil {
		o.Progress(n)
	}
}

// sameBlob reports whether the blob holds f already: its length, and its Content-MD5 or
// its sha256 metadata.
func sameBlob(ctx context.Context, b *blockblob.Client, f LocalFile) (bool, error) {
	p, err := b.GetProperties(ctx, nil)
	if bloberror.HasCode(err, bloberror.BlobNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if p.ContentLength == nil || *p.ContentLength != f.Size {
		return false, nil
	}
	if len(p.ContentMD5) > 0 && bytes.Equal(p.ContentMD5, f.MD5) {
		return true, nil
	}
	for k, v := range p.Metadata {
		if strings.EqualFold(k, sha256Metadata) && v != nil && *v == f.SHA256 {
			return true, nil
		}
	}
	return false, nil
}

// block is one block of a file: its id and where it lies.
type block struct {
	id          string
	off, length int64
}

// blocks cuts f into blocks of size; the ids name f's SHA-256, the block size and the
// index, so a later upload of the same bytes finds the blocks an earlier one staged.
func blocks(f LocalFile, size int64) ([]block, error) {
	sum, err := base64.StdEncoding.DecodeString(f.SHA256)
	if err != nil || len(sum) < 12 {
		return nil, fmt.Errorf("%s: bad SHA-256 %q", f.Name, f.SHA256)
	}
	var out []block
	for off, i := int64(0), 0; off < f.Size; off, i = off+size, i+1 {
		id := fmt.Sprintf("aduflash-%s-%010d-%06d", hex.EncodeToString(sum[:12]), size, i)
		out = append(out, block{id: base64.StdEncoding.EncodeToString([]byte(id)), off: off, length: min(size, f.Size-off)})
	}
	return out, nil
}

// putBlocks stages the blocks of f the blob lacks, o.Parallel at a time, and commits them
// with f's MD5 and SHA-256. It returns the bytes it sent and those found staged.
func (s *Store) putBlocks(ctx context.Context, b *blockblob.Client, f LocalFile, o UploadOptions) (sent, resumed int64, err error) {
	all, err := blocks(f, o.BlockSize)
	if err != nil {
		return 0, 0, err
	}
	have, err := stagedBlocks(ctx, b)
	if err != nil {
		return 0, 0, err
	}
	var todo []block
	for _, bl := range all {
		if have[bl.id] == bl.length {
			resumed += bl.length
			o.progress(bl.length)
		} else {
			todo = append(todo, bl)
		}
	}
	if sent, err = stageAll(ctx, b, f.Path, todo, o); err != nil {
		return sent, resumed, err
	}
	ids := make([]string, len(all))
	for i, bl := range all {
		ids[i] = bl.id
	}
	_, err = b.CommitBlockList(ctx, ids, &blockblob.CommitBlockListOptions{
		HTTPHeaders: &blob.HTTPHeaders{BlobContentMD5: f.MD5, BlobContentType: to.Ptr(contentType(f.Name))},
		Metadata:    map[string]*string{sha256Metadata: to.Ptr(f.SHA256)},
	})
	return sent, resumed, err
}

func contentType(name string) string {
	if strings.HasSuffix(name, ".json") {
		return "application/json"
	}
	return "application/octet-stream"
}

// stagedBlocks maps the ids of the blob's uncommitted blocks to their sizes.
func stagedBlocks(ctx context.Context, b *blockblob.Client) (map[string]int64, error) {
	have := map[string]int64{}
	l, err := b.GetBlockList(ctx, blockblob.BlockListTypeUncommitted, nil)
	if bloberror.HasCode(err, bloberror.BlobNotFound) {
		return have, nil
	}
	if err != nil {
		return nil, err
	}
	for _, bl := range l.UncommittedBlocks {
		if bl != nil && bl.Name != nil && bl.Size != nil {
			have[*bl.Name] = *bl.Size
		}
	}
	return have, nil
}

// stageAll stages todo from the file at path with o.Parallel workers, each with its own
// buffer; the first error stops the others. It returns the bytes of the blocks staged.
func stageAll(ctx context.Context, b *blockblob.Client, path string, todo []block, o UploadOptions) (int64, error) {
	fh, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer fh.Close()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	jobs := make(chan block)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		sent int64
	)
	for range min(o.Parallel, len(todo)) {
		wg.Go(func() {
			buf := make([]byte, o.BlockSize)
			for bl := range jobs {
				if err := stageBlock(ctx, b, fh, bl, buf[:bl.length]); err != nil {
					cancel(err)
					continue
				}
				mu.Lock()
				sent += bl.length
				mu.Unlock()
				o.progress(bl.length)
			}
		})
	}
feed:
	for _, bl := range todo {
		select {
		case jobs <- bl:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return sent, err
	}
	return sent, nil
}

// stageBlock reads bl from fh into buf and stages it with its MD5, which the storage
// service checks.
func stageBlock(ctx context.Context, b *blockblob.Client, fh io.ReaderAt, bl block, buf []byte) error {
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	if n, err := fh.ReadAt(buf, bl.off); n < len(buf) {
		return fmt.Errorf("%w: block at %d: read %d of %d bytes: %v (did the file change?)", ErrFiles, bl.off, n, len(buf), err)
	}
	sum := md5.Sum(buf)
	_, err := b.StageBlock(ctx, bl.id, streaming.NopCloser(bytes.NewReader(buf)),
		&blockblob.StageBlockOptions{TransactionalValidation: blob.TransferValidationTypeMD5(sum[:])})
	if err != nil {
		return fmt.Errorf("block at %d: %w", bl.off, err)
	}
	return nil
}
