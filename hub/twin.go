package hub

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/aduflash/aduflash/iothub"
)

// MaxPatchSize is the largest accepted twin patch, and the largest reported
// document a device may build up (IoT Hub's 32 KB limit, spec §1.7).
const MaxPatchSize = 32 * 1024

// OnReported registers fn to be called after every reported-properties
// PATCH a device sent was applied (and stored, with DataDir), before the
// device gets its 204, with the patch as sent (metadata members removed).
// fn runs on the device's connection goroutine: keep it short and do not
// call Disconnect for that device from it. The returned func unregisters fn.
func (h *Hub) OnReported(fn func(deviceID string, patch json.RawMessage)) (remove func()) {
	return h.reported.add(fn)
}

// applyReported merges patch into the device's reported properties, stores
// the twin and tells the observers. It returns the new reported $version.
func (h *Hub) applyReported(id string, patch []byte) (int64, error) {
	p, v, err := h.mergePatch(id, "reported", patch)
	if err != nil {
		return 0, err
	}
	body, err := marshal(p)
	if err != nil {
		return v, nil
	}
	h.opts.Logger.Debug("hub: reported properties", "device", id, "version", v, "patch", string(body))
	for _, fn := range h.reported.list() {
		fn(id, body)
	}
	return v, nil
}

// mergePatch decodes patch and merges it into the device's "desired" or "reported"
// document (mergeTwin); it returns the decoded patch and the new $version.
func (h *Hub) mergePatch(id, which string, patch []byte) (map[string]any, int64, error) {
	p, err := decodePatch(patch)
	if err != nil {
		return nil, 0, err
	}
	v, err := h.mergeTwin(id, which, p)
	return p, v, err
}

// mergeTwin merges the decoded patch p into the device's "desired" or "reported" document
// (which), bumps that document's $version and stores the twin. It returns the new $version.
func (h *Hub) mergeTwin(id, which string, p map[string]any) (int64, error) {
	h.mu.Lock()
	d := h.devices[id]
	if d == nil {
		h.mu.Unlock()
		return 0, fmt.Errorf("%w: %s", ErrUnknownDevice, id)
	}
	doc, ver := &d.reported, &d.reportedVer
	if which == "desired" {
		doc, ver = &d.desired, &d.desiredVer
	}
	merged, err := mergeWithin(*doc, p, which)
	if err != nil {
		h.mu.Unlock()
		return 0, err
	}
	*doc = merged
	*ver++
	v := *ver
	seq, data, serr := h.snapshotLocked(id, d)
	h.mu.Unlock()
	if err := h.persist(id, d, seq, data, serr); err != nil {
		return 0, err
	}
	return v, nil
}

// Twin returns the device's full twin document
// {"desired":{…,"$version":n},"reported":{…,"$version":m}}.
func (h *Hub) Twin(id string) (json.RawMessage, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	d := h.devices[id]
	if d == nil {
		return nil, fmt.Errorf("%w: %s", ErrUnknownDevice, id)
	}
	return d.twinJSON()
}

// SetDesired merges patch (a JSON object; null members delete) into the
// device's desired properties, bumps the desired $version, and, if the device
// is connected and subscribed, publishes the notification
// (patch + "$version") on $iothub/twin/PATCH/properties/desired/?$version=V.
// It returns the new desired $version. A patch that would make the desired
// document larger than MaxPatchSize (IoT Hub's 32 KB) is refused with
// ErrTwinTooLarge and changes nothing.
func (h *Hub) SetDesired(id string, patch json.RawMessage) (int64, error) {
	p, v, err := h.mergePatch(id, "desired", patch)
	if err != nil {
		return 0, err
	}
	p["$version"] = v
	body, err := marshal(p)
	if err != nil {
		return 0, err
	}
	topic := iothub.TopicDesiredPrefix + "?$version=" + strconv.FormatInt(v, 10)
	// Delivery outside h.mu; a concurrent SetDesired may overtake this one,
	// as with the real service; $version orders them.
	err = h.sendTo(id, topic, body)
	h.opts.Logger.Debug("hub: desired properties", "device", id, "version", v, "delivered", err == nil, "patch", string(body))
	return v, nil
}

// ReportedAgent returns the deviceUpdate.agent member of the device's reported properties,
// decoded as encoding/json does (nil when the device reported none): what its agent last
// said of its state, workflow and install.
func (h *Hub) ReportedAgent(id string) (map[string]any, error) {
	return h.deviceUpdateMember(id, "reported", "agent")
}

// deviceUpdateMember decodes member of the deviceUpdate component in the device's "desired"
// or "reported" properties (which); a member that is absent or not an object reads as nil.
func (h *Hub) deviceUpdateMember(id, which, member string) (map[string]any, error) {
	tw, err := h.Twin(id)
	if err != nil {
		return nil, err
	}
	var doc map[string]struct {
		DeviceUpdate map[string]json.RawMessage `json:"deviceUpdate"`
	}
	var m map[string]any
	if json.Unmarshal(tw, &doc) == nil {
		_ = json.Unmarshal(doc[which].DeviceUpdate[member], &m)
	}
	return m, nil
}

func (d *device) twinJSON() (json.RawMessage, error) {
	des := make(map[string]any, len(d.desired)+1)
	for k, v := range d.desired {
		des[k] = v
	}
	des["$version"] = d.desiredVer
	rep := make(map[string]any, len(d.reported)+1)
	for k, v := range d.reported {
		rep[k] = v
	}
	rep["$version"] = d.reportedVer
	return marshal(map[string]any{"desired": des, "reported": rep})
}

// decodePatch parses a JSON object patch, keeping numbers exact and dropping
// the read-only metadata members ($version, $metadata, …).
func decodePatch(b []byte) (map[string]any, error) {
	if len(b) > MaxPatchSize {
		return nil, fmt.Errorf("%w: %d bytes exceeds %d", ErrInvalidPatch, len(b), MaxPatchSize)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var p map[string]any
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidPatch, err)
	}
	if p == nil {
		return nil, fmt.Errorf("%w: not a JSON object", ErrInvalidPatch)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: trailing data", ErrInvalidPatch)
	}
	for k := range p {
		if strings.HasPrefix(k, "$") {
			delete(p, k)
		}
	}
	if depth(p) > 10 {
		return nil, fmt.Errorf("%w: nested deeper than 10 levels", ErrInvalidPatch)
	}
	return p, nil
}

func depth(v any) int {
	m, ok := v.(map[string]any)
	if !ok {
		return 0
	}
	d := 0
	for _, c := range m {
		d = max(d, depth(c))
	}
	return d + 1
}

// mergeWithin returns a copy of doc with patch merged in (merge-patch), refused with
// ErrTwinTooLarge when it would be larger than MaxPatchSize (IoT Hub's 32 KB for each of
// a twin's desired and reported documents); doc itself is not changed. which names the
// document in the error.
func mergeWithin(doc, patch map[string]any, which string) (map[string]any, error) {
	merged := cloneMap(doc)
	MergePatch(merged, patch)
	if b, err := json.Marshal(merged); err != nil || len(b) > MaxPatchSize {
		return nil, fmt.Errorf("%w: %s properties would be %d bytes, more than %d", ErrTwinTooLarge, which, len(b), MaxPatchSize)
	}
	return merged, nil
}

// cloneMap copies the objects of a decoded JSON document (other values are
// never modified in place by MergePatch and are shared).
func cloneMap(m map[string]any) map[string]any {
	c := make(map[string]any, len(m))
	for k, v := range m {
		if sub, ok := v.(map[string]any); ok {
			v = cloneMap(sub)
		}
		c[k] = v
	}
	return c
}

// MergePatch applies an RFC 7386 JSON merge patch (a decoded JSON object) to dst in place,
// as the Hub merges a twin patch into a twin document: a null member deletes, an object
// member is merged into the object there (replacing anything else), any other value
// replaces. Fakes of a device's hub use it to keep a twin as the Hub does.
func MergePatch(dst, patch map[string]any) {
	for k, v := range patch {
		switch pv := v.(type) {
		case nil:
			delete(dst, k)
		case map[string]any:
			sub, ok := dst[k].(map[string]any)
			if !ok {
				sub = map[string]any{}
			}
			MergePatch(sub, pv)
			dst[k] = sub
		default:
			dst[k] = v
		}
	}
}

func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("hub: encode: %w", err)
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}
