package hub

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/aduflash/aduflash/internal/atomicfile"
)

// writeFileAtomic replaces path with data durably (internal/atomicfile): a crash
// leaves the old or the new content, never a mix.
func writeFileAtomic(path string, data []byte, perm fs.FileMode) error {
	if err := atomicfile.WriteFile(path, data, perm); err != nil {
		return fmt.Errorf("hub: store: %w", err)
	}
	return nil
}

// syncDir makes the folder's entries durable.
func syncDir(dir string) error {
	if err := atomicfile.SyncDir(dir); err != nil {
		return fmt.Errorf("hub: store: sync %s: %w", dir, err)
	}
	return nil
}

// saver serialises the writes of one record and drops stale snapshots: a
// snapshot is taken (with a sequence number) under the owner's lock, written
// outside it, and only if nothing newer was written (or removed) meanwhile.
type saver struct {
	mu    sync.Mutex
	saved uint64 // sequence number of the last write or removal
}

func (s *saver) save(seq uint64, path string, data []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if seq <= s.saved {
		return nil
	}
	if err := writeFileAtomic(path, data, 0o600); err != nil {
		return err
	}
	s.saved = seq
	return nil
}

// remove deletes the record's file unless something newer was written
// meanwhile; a snapshot older than seq is never written after it. A missing
// file is no error.
func (s *saver) remove(seq uint64, path string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if seq <= s.saved {
		return nil
	}
	// Even if the file cannot be deleted, no older snapshot may replace it.
	s.saved = seq
	if err := os.Remove(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("hub: store: %w", err)
	}
	return syncDir(filepath.Dir(path))
}

// fileName maps an id to a file name that cannot collide, traverse or hide:
// every byte outside [A-Za-z0-9_-] is written as %XX.
func fileName(id string) string {
	var b strings.Builder
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-':
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// storedDevice is a device's file in DataDir/devices.
type storedDevice struct {
	ID              string         `json:"id"`
	Key             string         `json:"key,omitempty"`
	Thumbprint      string         `json:"thumbprint,omitempty"`
	ModelID         string         `json:"modelId,omitempty"`
	Desired         map[string]any `json:"desired"`
	DesiredVersion  int64          `json:"desiredVersion"`
	Reported        map[string]any `json:"reported"`
	ReportedVersion int64          `json:"reportedVersion"`
}

func (h *Hub) devicesDir() string { return filepath.Join(h.opts.DataDir, "devices") }

// loadDevices reads every device file of DataDir/devices.
func (h *Hub) loadDevices() error {
	dir := h.devicesDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("hub: data dir: %w", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("hub: data dir: %w", err)
	}
	for _, e := range ents {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".json") || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		p := filepath.Join(dir, e.Name())
		b, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("hub: data dir: %w", err)
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		var sd storedDevice
		if err := dec.Decode(&sd); err != nil {
			return fmt.Errorf("hub: data dir: %s: %w", p, err)
		}
		if sd.ID == "" || fileName(sd.ID)+".json" != e.Name() {
			return fmt.Errorf("hub: data dir: %s: device id %q does not match the file name", p, sd.ID)
		}
		d := &device{
			key: sd.Key, thumbprint: sd.Thumbprint, modelID: sd.ModelID,
			desired: sd.Desired, reported: sd.Reported,
			desiredVer: sd.DesiredVersion, reportedVer: sd.ReportedVersion,
			save: h.saverLocked(sd.ID),
		}
		if d.desired == nil {
			d.desired = map[string]any{}
		}
		if d.reported == nil {
			d.reported = map[string]any{}
		}
		h.devices[sd.ID] = d
	}
	return nil
}

// snapshotLocked marks a change of d and returns what persist needs.
// Called with h.mu held, d registered.
func (h *Hub) snapshotLocked(id string, d *device) (seq uint64, data []byte, err error) {
	if h.opts.DataDir == "" {
		return 0, nil, nil
	}
	h.seq++
	data, err = marshal(storedDevice{
		ID: id, Key: d.key, Thumbprint: d.thumbprint, ModelID: d.modelID,
		Desired: d.desired, DesiredVersion: d.desiredVer,
		Reported: d.reported, ReportedVersion: d.reportedVer,
	})
	return h.seq, data, err
}

// persist writes a snapshot taken by snapshotLocked (without h.mu held).
func (h *Hub) persist(id string, d *device, seq uint64, data []byte, err error) error {
	if h.opts.DataDir == "" {
		return nil
	}
	if err != nil {
		return err
	}
	return d.save.save(seq, h.devicePath(id), data)
}

// unpersist deletes the file of a device removed with sequence number seq
// (taken under h.mu when it left h.devices): a snapshot of the device taken
// before is not written after it.
func (h *Hub) unpersist(id string, d *device, seq uint64) error {
	if h.opts.DataDir == "" {
		return nil
	}
	return d.save.remove(seq, h.devicePath(id))
}

func (h *Hub) devicePath(id string) string {
	return filepath.Join(h.devicesDir(), fileName(id)+".json")
}
