package hub

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"

	"github.com/mochi-mqtt/server/v2/packets"
)

type device struct {
	key         string // base64 SAS key, "" if none
	thumbprint  string // lower-case hex SHA-256 of the DER certificate, "" if none
	desired     map[string]any
	reported    map[string]any
	desiredVer  int64
	reportedVer int64
	modelID     string

	// save writes the device's file; it is the id's, shared with any later
	// registration under the same id (see Hub.savers).
	save *saver
}

func (h *Hub) deviceLocked(id string) *device {
	d := h.devices[id]
	if d == nil {
		d = &device{desired: map[string]any{}, reported: map[string]any{}, desiredVer: 1, reportedVer: 1, save: h.saverLocked(id)}
		h.devices[id] = d
	}
	return d
}

// saverLocked returns the id's saver, made on first use. Called with h.mu
// held (or before the Hub is shared).
func (h *Hub) saverLocked(id string) *saver {
	s := h.savers[id]
	if s == nil {
		s = &saver{}
		h.savers[id] = s
	}
	return s
}

// RegisterDevice registers (or re-keys) a device with a base64 SAS key.
func (h *Hub) RegisterDevice(id, keyB64 string) error {
	if id == "" || strings.ContainsAny(id, "/#+?") {
		return fmt.Errorf("%w: device id %q", ErrInvalidOption, id)
	}
	if _, err := base64.StdEncoding.DecodeString(keyB64); err != nil || keyB64 == "" {
		return fmt.Errorf("%w: %s", ErrInvalidKey, id)
	}
	return h.saveDevice(id, func(d *device) { d.key = keyB64 })
}

// RegisterModule registers (or re-keys) module moduleID of the registered device deviceID
// with a base64 SAS key, as a module identity in IoT Hub (an IoT Edge module such as
// IoTHubDeviceUpdate): it connects with the client id "{deviceId}/{moduleId}" and its own
// twin, and is listed, deployed to and removed (RemoveDevice) under that id. Removing the
// device removes its modules.
func (h *Hub) RegisterModule(deviceID, moduleID, keyB64 string) error {
	if moduleID == "" || strings.ContainsAny(moduleID, "/#+?") {
		return fmt.Errorf("%w: module id %q", ErrInvalidOption, moduleID)
	}
	if _, err := base64.StdEncoding.DecodeString(keyB64); err != nil || keyB64 == "" {
		return fmt.Errorf("%w: %s/%s", ErrInvalidKey, deviceID, moduleID)
	}
	id := identityID(deviceID, moduleID)
	h.mu.Lock()
	if h.devices[deviceID] == nil {
		h.mu.Unlock()
		return fmt.Errorf("%w: %s (the module's device)", ErrUnknownDevice, deviceID)
	}
	d := h.deviceLocked(id)
	d.key = keyB64
	seq, data, err := h.snapshotLocked(id, d)
	h.mu.Unlock()
	return h.persist(id, d, seq, data, err)
}

// RegisterDeviceX509 registers a device authenticated by a client
// certificate with the given SHA-256 thumbprint (hex, case-insensitive,
// optional ':' separators). See Thumbprint.
func (h *Hub) RegisterDeviceX509(id, thumbprintSHA256 string) error {
	if id == "" || strings.ContainsAny(id, "/#+?") {
		return fmt.Errorf("%w: device id %q", ErrInvalidOption, id)
	}
	tp, err := ParseThumbprint(thumbprintSHA256)
	if err != nil {
		return fmt.Errorf("%w: thumbprint for %s: %w", ErrInvalidKey, id, err)
	}
	return h.saveDevice(id, func(d *device) { d.thumbprint = tp })
}

// saveDevice sets the credential of device id (registering it if new) and persists it.
func (h *Hub) saveDevice(id string, set func(*device)) error {
	h.mu.Lock()
	d := h.deviceLocked(id)
	set(d)
	seq, data, err := h.snapshotLocked(id, d)
	h.mu.Unlock()
	return h.persist(id, d, seq, data, err)
}

// Devices returns the ids of all registered devices, sorted.
func (h *Hub) Devices() []string {
	h.mu.Lock()
	ids := make([]string, 0, len(h.devices))
	for id := range h.devices {
		ids = append(ids, id)
	}
	h.mu.Unlock()
	sort.Strings(ids)
	return ids
}

// DeviceKey returns the device's base64 SAS key ("" for X.509 devices).
func (h *Hub) DeviceKey(id string) (string, error) {
	return h.deviceText(id, func(d *device) string { return d.key })
}

// DeviceThumbprint returns the SHA-256 thumbprint (lower-case hex) of the
// client certificate the device authenticates with ("" for SAS devices).
func (h *Hub) DeviceThumbprint(id string) (string, error) {
	return h.deviceText(id, func(d *device) string { return d.thumbprint })
}

// deviceText returns what field reads of the registered device id.
func (h *Hub) deviceText(id string, field func(*device) string) (string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	d := h.devices[id]
	if d == nil {
		return "", fmt.Errorf("%w: %s", ErrUnknownDevice, id)
	}
	return field(d), nil
}

// RemoveDevice deletes a device, as deleting a device identity in IoT Hub
// does: it leaves the registry (Devices, Twin and the rest answer
// ErrUnknownDevice), its live connection is dropped, its MQTT session is not
// resumed by a later connection, a later CONNECT with its old credentials is
// refused (not authorized), and its twin is gone (with DataDir its file is
// deleted, also when a write of the device races with the removal: the
// removal wins). A device registered later under the same id starts anew.
// An unknown id is an error wrapping ErrUnknownDevice. If deleting the file
// fails the error is returned, but the running Hub has removed the device.
func (h *Hub) RemoveDevice(id string) error {
	if !strings.Contains(id, "/") {
		for _, m := range h.Devices() {
			if strings.HasPrefix(m, id+"/") {
				if err := h.RemoveDevice(m); err != nil {
					return err
				}
			}
		}
	}
	h.mu.Lock()
	d := h.devices[id]
	if d == nil {
		h.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrUnknownDevice, id)
	}
	delete(h.devices, id)
	h.seq++
	seq := h.seq
	h.mu.Unlock()

	h.quotaMu.Lock()
	delete(h.quota, id)
	h.quotaMu.Unlock()
	h.connMu.Lock()
	delete(h.conns, id)
	h.connMu.Unlock()
	if cl, ok := h.srv.Clients.Get(id); ok {
		// Marked before it is stopped: see hook.OnSessionEstablish.
		h.staleMu.Lock()
		h.stale[id] = cl
		h.staleMu.Unlock()
		if !cl.Closed() {
			h.opts.Logger.Info("hub: disconnecting a removed device", "device", id)
		}
		cl.Stop(packets.ErrNotAuthorized)
	}

	for _, fn := range h.removed.list() {
		fn(id)
	}
	return h.unpersist(id, d, seq)
}

// onRemoved registers fn to be called after a device was removed (the
// Service stops following it). The returned func unregisters fn.
func (h *Hub) onRemoved(fn func(deviceID string)) (remove func()) { return h.removed.add(fn) }

// ParseThumbprint checks a SHA-256 certificate thumbprint (64 hex digits, ':'
// separators and either case allowed) and returns it as Thumbprint writes
// them: lower case, no separators.
func ParseThumbprint(s string) (string, error) {
	tp := strings.ToLower(strings.ReplaceAll(s, ":", ""))
	if b, err := hex.DecodeString(tp); err != nil || len(b) != sha256.Size {
		return "", fmt.Errorf("%q is not a SHA-256 thumbprint (64 hex digits)", s)
	}
	return tp, nil
}

// Thumbprint returns the lower-case hex SHA-256 of a DER certificate.
func Thumbprint(der []byte) string {
	s := sha256.Sum256(der)
	return hex.EncodeToString(s[:])
}

// ModelID returns the model-id the device announced in its last CONNECT.
func (h *Hub) ModelID(id string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if d := h.devices[id]; d != nil {
		return d.modelID
	}
	return ""
}
