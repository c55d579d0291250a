package agent

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	"github.com/aduflash/aduflash/adu"
	"github.com/aduflash/aduflash/download"
	"github.com/aduflash/aduflash/image/adaptive"
	"github.com/aduflash/aduflash/install"
)

// An update file whose downloadHandler is DownloadHandlerAdaptive carries two related files,
// told apart by their property adaptive.RoleProperty: the adaptive index (its SHA-256 in the
// signed update manifest) and the chunk store. The agent fetches the index, checks it, and
// installs the image from what the running bank's slot holds and the chunks it lacks; when
// that cannot be done it downloads the file itself (docs/adaptive.md).

// DownloadHandlerAdaptive is the download handler id of an image with an adaptive index.
const DownloadHandlerAdaptive = "aduflash/adaptive:1"

// AdaptiveFiles are an update file's adaptive index and chunk store.
type AdaptiveFiles struct {
	Index Source `json:"index"`
	Store Source `json:"store"`
}

// adaptiveFiles returns the adaptive files of f (nil when f has none, or not both), with
// their URLs from fileUrls.
func adaptiveFiles(f adu.File, urls map[string]string) *AdaptiveFiles {
	if !strings.EqualFold(f.DownloadHandler, DownloadHandlerAdaptive) {
		return nil
	}
	var af AdaptiveFiles
	for id, rf := range f.RelatedFiles {
		s := Source{URL: urls[id], Size: rf.SizeInBytes, SHA256: fileSHA256(rf.Hashes)}
		switch rf.Properties[adaptive.RoleProperty] {
		case adaptive.RoleIndex:
			af.Index = s
		case adaptive.RoleStore:
			af.Store = s
		}
	}
	if af.Index.URL == "" || af.Index.SHA256 == nil || af.Store.URL == "" {
		return nil
	}
	return &af
}

// adaptiveSource fetches and checks the index of af and opens the running bank's slot of
// class, for an adaptive install; done closes the slot. An index that cannot be fetched or
// does not verify is no error: the install downloads the whole file (why says why).
func (a *Agent) adaptiveSource(ctx context.Context, af *AdaptiveFiles, class string) (ad *install.Adaptive, done func(), why string) {
	done = func() {}
	if af == nil {
		return nil, done, ""
	}
	x, err := a.fetchIndex(ctx, af.Index)
	if err != nil {
		return nil, done, err.Error()
	}
	active, err := a.activeBank()
	if err != nil {
		return nil, done, err.Error()
	}
	slot, err := a.o.Layout.Slot(active + "/" + class)
	if err != nil {
		return nil, done, err.Error()
	}
	r, err := a.o.Layout.OpenReader(slot)
	if err != nil {
		return nil, done, fmt.Sprintf("reading %s: %v", slot.Name, err)
	}
	held := install.Held{Name: slot.Name, R: r, Size: r.Size()}
	return &install.Adaptive{Index: x, StoreURL: af.Store.URL, Held: []install.Held{held}}, func() { r.Close() }, ""
}

// fetchIndex downloads an adaptive index (its SHA-256 checked when known) and parses it.
func (a *Agent) fetchIndex(ctx context.Context, s Source) (*adaptive.Index, error) {
	if s.Size <= 0 || s.Size > adaptive.MaxIndexSize {
		return nil, fmt.Errorf("%w: adaptive index of %d bytes", ErrBadManifest, s.Size)
	}
	var buf bytes.Buffer
	if _, err := download.Fetch(ctx, download.Request{URL: s.URL, Size: s.Size, SHA256: s.SHA256, Client: a.o.HTTP,
		Retry: a.o.Retry, StallTimeout: a.o.StallTimeout}, &buf); err != nil {
		return nil, fmt.Errorf("adaptive index %s: %w", s.URL, err)
	}
	x, err := adaptive.ParseIndex(buf.Bytes())
	if err != nil {
		return nil, fmt.Errorf("adaptive index %s: %w", s.URL, err)
	}
	return x, nil
}
