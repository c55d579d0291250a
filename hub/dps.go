package hub

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/aduflash/aduflash/dps"
	"github.com/aduflash/aduflash/internal/errkind"
	"github.com/aduflash/aduflash/iothub"
)

// The Hub is also a Device Provisioning Service on the same MQTT listener: a CONNECT whose
// username is "{idScope}/registrations/{registrationId}/api-version=…" is a registration,
// authenticated against the enrollments (an individual enrollment's key or certificate
// thumbprint, or a key derived from an enrollment group's key), that may only use the
// $dps/registrations/ topics. An assigned registration registers the device (device id =
// registration id) in the Hub's registry with the key or certificate it registered with, so
// that it then connects as a device; a device registered already keeps its twin.

// DefaultIDScope is the id scope of the Hub's provisioning service (Options.IDScope).
const DefaultIDScope = "0ne0000ADU1"

// dpsRetryAfter is the retry-after (seconds) of an operation's first answer: the
// assignment is done at once, so the device's first poll finds it.
const dpsRetryAfter = "1"

// enrollmentsFile keeps the enrollments in DataDir.
const enrollmentsFile = "enrollments.json"

// ErrUnknownEnrollment reports an enrollment id that is not there.
var ErrUnknownEnrollment = errkind.New(errkind.Input, "hub: unknown enrollment")

// Enrollment says who may register through the Hub's provisioning service: an individual
// enrollment (ID is the registration id; Key or Thumbprint) or an enrollment group (Group;
// Key is the group key from which each device's key is derived, dps.DeriveKey).
type Enrollment struct {
	ID         string `json:"id"`
	Group      bool   `json:"group,omitempty"`
	Key        string `json:"key,omitempty"`
	Thumbprint string `json:"thumbprint,omitempty"`
}

// IDScope is the id scope devices register with.
func (h *Hub) IDScope() string { return h.opts.IDScope }

// AddEnrollment adds (or replaces) an enrollment. An individual enrollment has a key or a
// certificate thumbprint, a group a key. Registered devices are not touched: a replaced key
// takes effect at their next registration.
func (h *Hub) AddEnrollment(e Enrollment) error {
	if err := dps.CheckRegistrationID(e.ID); err != nil {
		return fmt.Errorf("%w: enrollment: %w", ErrInvalidOption, err)
	}
	if e.Thumbprint != "" {
		tp, err := ParseThumbprint(e.Thumbprint)
		if err != nil || e.Group || e.Key != "" {
			return fmt.Errorf("%w: enrollment %s: an individual enrollment with a SHA-256 thumbprint and no key", ErrInvalidKey, e.ID)
		}
		e.Thumbprint = tp
	} else if b, err := base64.StdEncoding.DecodeString(e.Key); err != nil || len(b) == 0 {
		return fmt.Errorf("%w: enrollment %s: the key is not base64", ErrInvalidKey, e.ID)
	}
	h.enrollMu.Lock()
	defer h.enrollMu.Unlock()
	next := slices.DeleteFunc(slices.Clone(h.enrollments), func(o Enrollment) bool { return o.ID == e.ID })
	return h.setEnrollmentsLocked(append(next, e))
}

// RemoveEnrollment deletes the enrollment id; devices it registered stay registered (as in
// DPS: delete them from the registry to revoke them). An unknown id wraps
// ErrUnknownEnrollment.
func (h *Hub) RemoveEnrollment(id string) error {
	h.enrollMu.Lock()
	defer h.enrollMu.Unlock()
	next := slices.DeleteFunc(slices.Clone(h.enrollments), func(o Enrollment) bool { return o.ID == id })
	if len(next) == len(h.enrollments) {
		return fmt.Errorf("%w: %s", ErrUnknownEnrollment, id)
	}
	return h.setEnrollmentsLocked(next)
}

// Enrollments returns the enrollments, sorted by id.
func (h *Hub) Enrollments() []Enrollment {
	h.enrollMu.Lock()
	defer h.enrollMu.Unlock()
	return slices.Clone(h.enrollments)
}

func (h *Hub) setEnrollmentsLocked(list []Enrollment) error {
	slices.SortFunc(list, func(a, b Enrollment) int { return strings.Compare(a.ID, b.ID) })
	if h.opts.DataDir != "" {
		b, err := json.MarshalIndent(list, "", "  ")
		if err != nil {
			return err
		}
		if err := writeFileAtomic(filepath.Join(h.opts.DataDir, enrollmentsFile), b, 0o600); err != nil {
			return err
		}
	}
	h.enrollments = list
	return nil
}

// loadEnrollments reads DataDir's enrollments (none is fine).
func (h *Hub) loadEnrollments() error {
	p := filepath.Join(h.opts.DataDir, enrollmentsFile)
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err == nil {
		err = json.Unmarshal(b, &h.enrollments)
	}
	if err != nil {
		return fmt.Errorf("hub: data dir: %s: %w", p, err)
	}
	return nil
}

// dpsClient is an authenticated registration: the credential the device is registered
// with once assigned.
type dpsClient struct {
	key, thumbprint string
	operation       string // the operation id, "" before the register request
}

// parseDPSUsername splits "{idScope}/registrations/{registrationId}/api-version=…".
func parseDPSUsername(u string) (scope, regID string, ok bool) {
	parts := strings.SplitN(u, "/", 4)
	if len(parts) != 4 || parts[1] != "registrations" || !strings.HasPrefix(parts[3], "api-version=") {
		return "", "", false
	}
	return parts[0], parts[2], true
}

// isDPS says whether cl connected as a registration.
func isDPS(cl *mqtt.Client) bool {
	_, _, ok := parseDPSUsername(string(cl.Properties.Username))
	return ok
}

// authenticateDPS checks a registration's CONNECT and remembers its credential.
func (k *hook) authenticateDPS(cl *mqtt.Client, pk packets.Packet, scope, regID string) bool {
	h := k.h
	log := h.opts.Logger
	if scope != h.opts.IDScope || regID != cl.ID {
		log.Info("hub: refused DPS CONNECT: id scope or registration id", "client", cl.ID, "username", string(pk.Connect.Username))
		return false
	}
	c, why := h.enrolled(cl, regID, string(pk.Connect.Password))
	if c == nil {
		log.Info("hub: refused DPS CONNECT", "registration", regID, "why", why)
		return false
	}
	h.dpsMu.Lock()
	h.dps[cl] = c
	h.dpsMu.Unlock()
	return true
}

// enrolled finds the enrollment the credential belongs to: the individual enrollment of
// regID (its key or thumbprint), else a group whose derived key signed the token.
func (h *Hub) enrolled(cl *mqtt.Client, regID, password string) (*dpsClient, string) {
	list := h.Enrollments()
	if password == "" {
		tc, ok := cl.Net.Conn.(*tls.Conn)
		if !ok || len(tc.ConnectionState().PeerCertificates) == 0 {
			return nil, "no password and no client certificate"
		}
		tp := Thumbprint(tc.ConnectionState().PeerCertificates[0].Raw)
		if i := slices.IndexFunc(list, func(e Enrollment) bool { return !e.Group && e.ID == regID && e.Thumbprint == tp }); i >= 0 {
			return &dpsClient{thumbprint: tp}, ""
		}
		return nil, "no individual enrollment with this certificate"
	}
	tok, err := iothub.ParseSASToken(password)
	if err != nil {
		return nil, err.Error()
	}
	sr := dps.ResourceURI(h.opts.IDScope, regID)
	for _, e := range list {
		key := e.Key
		switch {
		case e.Group && key != "":
			key, _ = dps.DeriveKey(e.Key, regID)
		case e.ID != regID || key == "":
			continue
		}
		if tok.Verify(key, sr, h.opts.Now()) == nil {
			return &dpsClient{key: key}, ""
		}
	}
	return nil, "no enrollment whose key signed the token"
}

// dpsPublishRefused says why a registration may not publish to topic, or "".
func dpsPublishRefused(topic string) string {
	if strings.HasPrefix(topic, dps.TopicRegister+"?") || strings.HasPrefix(topic, dps.TopicOperationStatus+"?") {
		return ""
	}
	return "not a DPS request topic"
}

// handleDPS answers a registration's request: register (assign at once, answer 202
// assigning) or operation status (200 assigned).
func (k *hook) handleDPS(cl *mqtt.Client, topic string, payload []byte) {
	h := k.h
	_, query, _ := strings.Cut(topic, "?")
	q, _ := url.ParseQuery(query)
	rid := q.Get("$rid")
	if rid == "" || len(rid) > 64 {
		return
	}
	h.dpsMu.Lock()
	c := h.dps[cl]
	h.dpsMu.Unlock()
	answer := func(status int, retry string, body any) {
		t := fmt.Sprintf("%s%d/?$rid=%s", dps.TopicReplyPrefix, status, url.QueryEscape(rid))
		if retry != "" {
			t += "&retry-after=" + retry
		}
		b, _ := json.Marshal(body)
		if err := h.sendTo(cl.ID, t, b); err != nil {
			h.opts.Logger.Debug("hub: DPS reply not delivered", "registration", cl.ID, "err", err)
		}
	}
	switch {
	case c == nil:
		answer(401, "", map[string]any{"errorCode": 401002, "message": "not authenticated"})
	case strings.HasPrefix(topic, dps.TopicRegister):
		var req struct {
			RegistrationID string `json:"registrationId"`
		}
		if len(payload) > dps.MaxReply || json.Unmarshal(payload, &req) != nil || req.RegistrationID != cl.ID {
			answer(400, "", map[string]any{"errorCode": 400004, "message": "the body must be {\"registrationId\": \"" + cl.ID + "\"}"})
			return
		}
		if err := h.assign(cl.ID, c); err != nil {
			h.opts.Logger.Error("hub: DPS assignment failed", "registration", cl.ID, "err", err)
			answer(500, "", map[string]any{"errorCode": 500000, "message": "assignment failed"})
			return
		}
		h.dpsMu.Lock()
		c.operation = newOperationID()
		h.dpsMu.Unlock()
		answer(202, dpsRetryAfter, map[string]string{"operationId": c.operation, "status": dps.StatusAssigning})
	case q.Get("operationId") == "" || q.Get("operationId") != c.operation:
		answer(404, "", map[string]any{"errorCode": 404201, "message": "unknown operation"})
	default:
		answer(200, "", map[string]any{"operationId": c.operation, "status": dps.StatusAssigned,
			"registrationState": dps.RegistrationState{RegistrationID: cl.ID, AssignedHub: h.opts.HostName,
				DeviceID: cl.ID, Status: dps.StatusAssigned, Substatus: "initialAssignment"}})
	}
}

// assign registers the device with the registration's credential.
func (h *Hub) assign(id string, c *dpsClient) error {
	if c.thumbprint != "" {
		return h.RegisterDeviceX509(id, c.thumbprint)
	}
	return h.RegisterDevice(id, c.key)
}

func newOperationID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return "4." + hex.EncodeToString(b)
}
