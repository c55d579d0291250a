package agent

import (
	"net/http"

	"github.com/aduflash/aduflash/install"
)

// The agent installs through package install; these are its names in the agent's API.
type (
	// Source is one update file: where to fetch it and what the service says it is.
	Source = install.Source
	// ImageInfo is what the installer learnt about an image; checkImage decides whether it
	// may go into the slot.
	ImageInfo = install.Info
)

// Image formats an update file can have.
const (
	FormatAduimg  = install.FormatAduimg
	FormatMCUboot = install.FormatMCUboot
	FormatRaw     = install.FormatRaw
)

// DefaultHTTPClient returns a client for update downloads: no overall timeout (download has
// its own stall timeout) and file:// URLs served from the local file system.
func DefaultHTTPClient() *http.Client { return install.DefaultHTTPClient() }

// installer builds the installer of a step into a slot of class: the agent's keys and
// download settings, checkImage for compatibility and versions.
func (a *Agent) installer(class string) *install.Installer {
	in := &install.Installer{Keyring: a.o.Keyring, AllowRaw: a.o.AllowRaw, HTTP: a.o.HTTP,
		Retry: a.o.Retry, StallTimeout: a.o.StallTimeout, MaxChunkSize: int(a.o.MaxChunkSize),
		MaxHeaderSize: MaxHeaderSize,
		WriterOptions: a.o.WriterOptions, Check: func(info ImageInfo) error { return a.checkImage(class, info) }}
	in.Meter = a.o.Meter
	if a.o.OnBytes != nil {
		in.Meter = &bytesMeter{fn: a.o.OnBytes, next: a.o.Meter}
	}
	return in
}

// bytesMeter tells Options.OnBytes of the payload bytes written into a slot, and passes
// everything on to Options.Meter.
type bytesMeter struct {
	fn      func(n int64)
	next    install.Meter // nil: none
	writing bool
}

func (m *bytesMeter) Stage(name string, total int64) {
	m.writing = name == install.StageWrite
	if m.next != nil {
		m.next.Stage(name, total)
	}
}

func (m *bytesMeter) Add(n int64) {
	if m.writing {
		m.fn(n)
	}
	if m.next != nil {
		m.next.Add(n)
	}
}

func (m *bytesMeter) Fetched(n int64) {
	if am, ok := m.next.(install.AdaptiveMeter); ok {
		am.Fetched(n)
	}
}

func (m *bytesMeter) Reused(n int64) {
	if am, ok := m.next.(install.AdaptiveMeter); ok {
		am.Reused(n)
	}
}
