package hub

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/aduflash/aduflash/dps"
	"github.com/aduflash/aduflash/iothub"
)

// maxKeepAlive caps the client keep-alive so that the server-side timeout
// (1.5 × keep-alive) stays within IoT Hub's 1767 s (spec §1.1); a keep-alive
// of 0 (none) gets the cap too.
const maxKeepAlive = 1177

// hook implements IoT Hub's authentication, topic ACL and twin protocol.
type hook struct {
	mqtt.HookBase
	h *Hub
}

func (k *hook) ID() string { return "iothub" }

func (k *hook) Provides(b byte) bool {
	switch b {
	case mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnSessionEstablish, mqtt.OnSessionEstablished,
		mqtt.OnACLCheck, mqtt.OnPacketRead, mqtt.OnPublish, mqtt.OnDisconnect:
		return true
	}
	return false
}

// OnConnect refuses protocols other than MQTT 3.1.1 (3.1 is refused by the
// broker's MinimumProtocolVersion) and caps the keep-alive as IoT Hub does.
func (k *hook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	if pk.ProtocolVersion != 4 {
		k.h.opts.Logger.Info("hub: refused CONNECT: MQTT version", "client", cl.ID, "version", pk.ProtocolVersion)
		_ = k.h.srv.SendConnack(cl, packets.ErrUnsupportedProtocolVersion, false, nil)
		return packets.ErrUnsupportedProtocolVersion
	}
	if cl.State.Keepalive == 0 || cl.State.Keepalive > maxKeepAlive {
		cl.State.Keepalive = maxKeepAlive
	}
	return nil
}

// OnPacketRead closes the connection of a device that publishes to a topic
// it may not use, or with QoS 2, as IoT Hub does (spec §1; IoT Hub's MQTT
// support: "the connection is closed"). ErrRejectPacket (the only error the
// broker does not ignore here) ends its read loop for the client.
func (k *hook) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Type != packets.Publish {
		return pk, nil
	}
	if pk.FixedHeader.Qos > 1 {
		k.h.opts.Logger.Info("hub: disconnecting: PUBLISH with QoS 2", "device", cl.ID, "topic", pk.TopicName)
		cl.Stop(packets.ErrQosNotSupported)
		return pk, packets.ErrRejectPacket
	}
	if why := k.h.publishRefused(cl, pk.TopicName); why != "" {
		k.h.opts.Logger.Info("hub: disconnecting: PUBLISH to a forbidden topic", "device", cl.ID, "topic", pk.TopicName, "why", why)
		cl.Stop(packets.ErrNotAuthorized)
		return pk, packets.ErrRejectPacket
	}
	pk.FixedHeader.Retain = false
	return pk, nil
}

// publishRefused says why the device may not publish to topic, or "".
func (h *Hub) publishRefused(cl *mqtt.Client, topic string) string {
	switch {
	case strings.ContainsAny(topic, "+#\x00") || topic == "":
		return "not a valid topic name"
	case isDPS(cl):
		return dpsPublishRefused(topic)
	case strings.HasPrefix(topic, "$iothub/twin/"):
		return ""
	case strings.HasPrefix(topic, "$iothub/methods/res/"):
		if _, sub := h.srv.Topics.Subscribers("$iothub/methods/POST/x").Subscriptions[cl.ID]; !sub {
			return "method response without a subscription to $iothub/methods/POST/#"
		}
		return ""
	case topic == telemetryTopic(cl.ID) || strings.HasPrefix(topic, telemetryTopic(cl.ID)+"/"):
		return ""
	case strings.HasPrefix(topic, "devices/"):
		return "not the device's own telemetry topic"
	}
	return "not an IoT Hub device topic"
}

// subscribeAllowed: the twin topics, direct methods, and the device's own
// cloud-to-device topic.
func subscribeAllowed(cl *mqtt.Client, filter string) bool {
	if isDPS(cl) {
		return filter == dps.FilterReplies
	}
	return strings.HasPrefix(filter, "$iothub/twin/") ||
		strings.HasPrefix(filter, "$iothub/methods/POST/") ||
		strings.HasPrefix(filter, "devices/"+cl.ID+"/messages/devicebound/")
}

// parseUsername splits "{host}/{deviceId}/[{moduleId}/]?api-version=…[&model-id=…]".
func parseUsername(u string) (host, deviceID, moduleID string, q url.Values, err error) {
	path, query, ok := strings.Cut(u, "?")
	if !ok {
		return "", "", "", nil, errors.New("no '?' in username")
	}
	parts := strings.Split(path, "/")
	if len(parts) == 4 && parts[3] == "" && parts[2] != "" {
		moduleID = parts[2]
		parts = parts[:3]
		parts[2] = ""
	}
	if len(parts) != 3 || parts[2] != "" || parts[0] == "" || parts[1] == "" {
		return "", "", "", nil, errors.New("username path is not {host}/{deviceId}/ or {host}/{deviceId}/{moduleId}/")
	}
	q, err = url.ParseQuery(query)
	if err != nil {
		return "", "", "", nil, fmt.Errorf("username query: %w", err)
	}
	if q.Get("api-version") == "" {
		return "", "", "", nil, errors.New("username lacks api-version")
	}
	return parts[0], parts[1], moduleID, q, nil
}

// identityID is the registry id of a device or of a module: "{deviceId}" or
// "{deviceId}/{moduleId}", the MQTT client id IoT Hub requires of it.
func identityID(deviceID, moduleID string) string {
	if moduleID == "" {
		return deviceID
	}
	return deviceID + "/" + moduleID
}

// telemetryTopic is the device-to-cloud topic of a device or module id.
func telemetryTopic(id string) string {
	if dev, mod, ok := strings.Cut(id, "/"); ok {
		return "devices/" + dev + "/modules/" + mod + "/messages/events"
	}
	return "devices/" + id + "/messages/events"
}

func (k *hook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	h := k.h
	if scope, regID, ok := parseDPSUsername(string(pk.Connect.Username)); ok {
		return k.authenticateDPS(cl, pk, scope, regID)
	}
	d, q, ok := k.authenticate(cl, pk)
	if !ok {
		return false
	}
	h.mu.Lock()
	if h.devices[cl.ID] != d {
		// Removed (or removed and registered anew) since it was checked.
		h.mu.Unlock()
		h.opts.Logger.Info("hub: refused CONNECT: the device was removed", "device", cl.ID)
		return false
	}
	var (
		seq     uint64
		data    []byte
		err     error
		changed = d.modelID != q.Get("model-id")
	)
	if changed {
		d.modelID = q.Get("model-id")
		seq, data, err = h.snapshotLocked(cl.ID, d)
	}
	h.mu.Unlock()
	if changed {
		if err := h.persist(cl.ID, d, seq, data, err); err != nil {
			h.opts.Logger.Error("hub: storing the twin failed", "device", cl.ID, "err", err)
		}
	}
	return true
}

// authenticate checks a CONNECT as IoT Hub does and returns the registered
// device it authenticates as, with the username's query.
func (k *hook) authenticate(cl *mqtt.Client, pk packets.Packet) (*device, url.Values, bool) {
	h := k.h
	log := h.opts.Logger
	host, devID, modID, q, err := parseUsername(string(pk.Connect.Username))
	if err != nil {
		log.Info("hub: refused CONNECT", "client", cl.ID, "err", err)
		return nil, nil, false
	}
	id := identityID(devID, modID)
	if !strings.EqualFold(host, h.opts.HostName) || id != cl.ID {
		log.Info("hub: refused CONNECT: host/device mismatch", "client", cl.ID, "username", string(pk.Connect.Username))
		return nil, nil, false
	}
	if pk.Connect.WillFlag {
		w := pk.Connect.WillTopic
		if w != telemetryTopic(id) && !strings.HasPrefix(w, telemetryTopic(id)+"/") {
			log.Info("hub: refused CONNECT: will topic", "device", id, "topic", w)
			return nil, nil, false
		}
	}
	h.mu.Lock()
	d := h.devices[id]
	var key, tp string
	if d != nil {
		key, tp = d.key, d.thumbprint
	}
	h.mu.Unlock()
	if d == nil {
		log.Info("hub: refused CONNECT: unknown device", "device", id)
		return nil, nil, false
	}
	if len(pk.Connect.Password) > 0 {
		if key == "" {
			return nil, nil, false
		}
		tok, err := iothub.ParseSASToken(string(pk.Connect.Password))
		if err == nil {
			err = tok.Verify(key, iothub.ResourceURI(host, devID, modID), h.opts.Now())
		}
		if err != nil {
			log.Info("hub: refused CONNECT: SAS", "device", id, "err", err)
			return nil, nil, false
		}
	} else {
		tc, ok := cl.Net.Conn.(*tls.Conn)
		if !ok || tp == "" {
			log.Info("hub: refused CONNECT: no password and no X.509 identity", "device", id)
			return nil, nil, false
		}
		certs := tc.ConnectionState().PeerCertificates
		if len(certs) == 0 || Thumbprint(certs[0].Raw) != tp {
			log.Info("hub: refused CONNECT: client certificate thumbprint mismatch", "device", id)
			return nil, nil, false
		}
	}
	return d, q, true
}

// OnSessionEstablish runs after a CONNECT was authenticated, before the
// broker takes over the session an earlier connection of the same client id
// left: the session of a removed device (whose client RemoveDevice stopped)
// is dropped, so that a device registered anew under its id starts with a
// clean session, as after a device deletion in IoT Hub. A clean session
// needs nothing (the broker does not resume it, and its connection's
// goroutine deletes it).
func (k *hook) OnSessionEstablish(cl *mqtt.Client, pk packets.Packet) {
	h := k.h
	if isDPS(cl) {
		return
	}
	h.staleMu.Lock()
	old, ok := h.stale[cl.ID]
	delete(h.stale, cl.ID)
	h.staleMu.Unlock()
	if !ok || old.Properties.Clean {
		return
	}
	if cur, found := h.srv.Clients.Get(cl.ID); found && cur == old {
		h.srv.UnsubscribeClient(old)
		old.ClearInflights()
		h.srv.Clients.Delete(cl.ID)
	}
}

// OnSessionEstablished checks the connection's credentials again once the
// client is in the broker's client list: a device removed between its
// CONNECT's authentication and then was not seen by RemoveDevice, and is
// dropped here.
func (k *hook) OnSessionEstablished(cl *mqtt.Client, pk packets.Packet) {
	h := k.h
	if isDPS(cl) {
		h.opts.Logger.Info("hub: DPS registration connected", "registration", cl.ID, "remote", cl.Net.Remote)
		return
	}
	h.mu.Lock()
	_, registered := h.devices[cl.ID]
	h.mu.Unlock()
	if registered {
		if _, _, ok := k.authenticate(cl, pk); ok {
			h.connected(cl)
			return
		}
	}
	h.opts.Logger.Info("hub: disconnecting a removed device", "device", cl.ID)
	h.staleMu.Lock()
	h.stale[cl.ID] = cl
	h.staleMu.Unlock()
	cl.Stop(packets.ErrNotAuthorized)
}

// OnDisconnect records and logs the end of a device's connection.
func (k *hook) OnDisconnect(cl *mqtt.Client, err error, expire bool) {
	if isDPS(cl) {
		k.h.dpsMu.Lock()
		delete(k.h.dps, cl)
		k.h.dpsMu.Unlock()
		return
	}
	k.h.disconnected(cl, err)
}

// OnACLCheck: publishes were checked by OnPacketRead (this is the same
// rule); subscriptions outside the allowed filters get SUBACK 0x80.
func (k *hook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if write {
		return k.h.publishRefused(cl, topic) == ""
	}
	if !subscribeAllowed(cl, topic) {
		k.h.opts.Logger.Info("hub: refused SUBSCRIBE", "device", cl.ID, "filter", topic)
		return false
	}
	return true
}

// OnPublish answers twin requests directly to the requesting client. No
// device publish reaches another subscriber: telemetry and method responses
// are acknowledged (QoS 1) and dropped.
func (k *hook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	switch {
	case isDPS(cl):
		k.handleDPS(cl, pk.TopicName, pk.Payload)
	case strings.HasPrefix(pk.TopicName, "$iothub/twin/"):
		k.handleTwin(cl, pk.TopicName, pk.Payload)
	}
	return pk, packets.CodeSuccessIgnore
}

func (k *hook) respond(cl *mqtt.Client, status int, rid string, version int64, body []byte) {
	t := iothub.Topic{Kind: iothub.TopicTwinResponse, Status: status, RequestID: rid, Version: version, HasVersion: version > 0}
	if err := k.h.sendTo(cl.ID, t.String(), body); err != nil {
		k.h.opts.Logger.Debug("hub: response not delivered", "device", cl.ID, "status", status, "err", err)
	}
}

func (k *hook) handleTwin(cl *mqtt.Client, topic string, payload []byte) {
	h := k.h
	t, err := iothub.ParseTopic(topic)
	rid := t.RequestID
	if err != nil {
		// A $rid recovered from a malformed topic still gets its answer.
		if _, q, ok := strings.Cut(topic, "?"); ok {
			if v, err := url.ParseQuery(q); err == nil {
				rid = v.Get("$rid")
			}
		}
	}
	if ok, flood := h.allowTwin(cl.ID); !ok {
		if flood {
			h.opts.Logger.Warn("hub: disconnecting a device that keeps exceeding its twin request quota", "device", cl.ID)
			cl.Stop(packets.ErrQuotaExceeded)
			return
		}
		if rid != "" {
			k.respond(cl, 429, rid, 0, nil)
		}
		return
	}
	if err != nil {
		// Answer 400 if a $rid can be recovered, else drop.
		if rid != "" {
			k.respond(cl, 400, rid, 0, nil)
		}
		h.opts.Logger.Info("hub: bad twin topic", "device", cl.ID, "topic", topic, "err", err)
		return
	}
	switch t.Kind {
	case iothub.TopicTwinGet:
		h.mu.Lock()
		d := h.devices[cl.ID]
		var body []byte
		if d != nil {
			body, err = d.twinJSON()
		}
		h.mu.Unlock()
		switch {
		case d == nil:
			k.respond(cl, 404, t.RequestID, 0, nil)
		case err != nil:
			k.respond(cl, 500, t.RequestID, 0, nil)
		default:
			k.respond(cl, 200, t.RequestID, 0, body)
		}
	case iothub.TopicReportedPatch:
		if len(payload) > MaxPatchSize {
			k.respond(cl, 413, t.RequestID, 0, nil)
			return
		}
		v, err := h.applyReported(cl.ID, payload)
		switch {
		case errors.Is(err, ErrTwinTooLarge):
			k.respond(cl, 413, t.RequestID, 0, nil)
		case errors.Is(err, ErrInvalidPatch):
			k.respond(cl, 400, t.RequestID, 0, []byte(strconv.Quote(err.Error())))
		case errors.Is(err, ErrUnknownDevice):
			k.respond(cl, 404, t.RequestID, 0, nil)
		case err != nil:
			h.opts.Logger.Error("hub: storing the twin failed", "device", cl.ID, "err", err)
			k.respond(cl, 500, t.RequestID, 0, nil)
		default:
			k.respond(cl, 204, t.RequestID, v, nil)
		}
	default:
		// Devices may not publish responses or desired patches.
		if t.RequestID != "" {
			k.respond(cl, 400, t.RequestID, 0, nil)
		}
	}
}
