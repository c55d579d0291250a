package hub

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/aduflash/aduflash/iothub"
	"github.com/aduflash/aduflash/iothub/iothubtest"
)

// Bad device behaviour against the hub (issue 5): each is refused the way IoT
// Hub refuses it, and the hub stays up for well-behaved devices.

const key3 = "dGhpcmQga2V5IGZvciB0aGUgcm9idXN0bmVzcyB0ZXN0cw=="

// rawDevice is a plain paho MQTT 3.1.1 client, free to misbehave.
type rawDevice struct {
	c    paho.Client
	lost chan error
	res  chan iothub.Topic // twin responses
}

type rawOpts struct {
	clientID, username, password string
	will                         string
}

func goodRaw(h *Hub, dev, key string) rawOpts {
	return rawOpts{
		clientID: dev,
		username: iothub.Username(testHost, dev, "", "", modelID),
		password: sasFor(testHost, dev, key, time.Now().Add(time.Hour)),
	}
}

func sasFor(host, dev, key string, expiry time.Time) string {
	tok, err := iothub.NewSASToken(key, iothub.ResourceURI(host, dev, ""), "", expiry)
	if err != nil {
		panic(err)
	}
	return tok
}

// connectRaw connects and returns the client, or the CONNECT error.
func connectRaw(t *testing.T, h *Hub, o rawOpts) (*rawDevice, error) {
	t.Helper()
	d := &rawDevice{lost: make(chan error, 1), res: make(chan iothub.Topic, 20000)}
	po := paho.NewClientOptions().
		AddBroker("tcp://" + h.Addr().String()).
		SetClientID(o.clientID).
		SetUsername(o.username).
		SetPassword(o.password).
		SetProtocolVersion(4).
		SetCleanSession(true).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetConnectTimeout(5 * time.Second).
		SetKeepAlive(30 * time.Second).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			select {
			case d.lost <- err:
			default:
			}
		}).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) {
			if tp, err := iothub.ParseTopic(m.Topic()); err == nil && tp.Kind == iothub.TopicTwinResponse {
				d.res <- tp
			}
		})
	if o.will != "" {
		po.SetWill(o.will, "gone", 0, false)
	}
	d.c = paho.NewClient(po)
	tok := d.c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		d.c.Disconnect(0)
		return nil, errors.New("connect timed out")
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { d.c.Disconnect(0) })
	return d, nil
}

func mustRaw(t *testing.T, h *Hub, o rawOpts) *rawDevice {
	t.Helper()
	d, err := connectRaw(t, h, o)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func (d *rawDevice) subscribe(t *testing.T, filters ...string) map[string]byte {
	t.Helper()
	m := map[string]byte{}
	for _, f := range filters {
		m[f] = 1
	}
	tok := d.c.SubscribeMultiple(m, nil)
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe %v: %v", filters, tok.Error())
	}
	return tok.(*paho.SubscribeToken).Result()
}

func (d *rawDevice) publish(t *testing.T, topic string, qos byte, payload []byte) {
	t.Helper()
	tok := d.c.Publish(topic, qos, false, payload)
	tok.WaitTimeout(5 * time.Second) // QoS 1 to a closing connection may never complete
}

// eventWait bounds the wait for something that must happen (a response, a closed
// connection): long, since only a failing test waits it out, and a machine busy with other
// tests (QEMU) can take seconds to schedule the hub.
const eventWait = 15 * time.Second

// request sends a twin request and waits for its response status.
func (d *rawDevice) request(t *testing.T, topic string, payload []byte) int {
	t.Helper()
	tp, err := iothub.ParseTopic(topic)
	if err != nil {
		t.Fatal(err)
	}
	d.publish(t, topic, 0, payload)
	deadline := time.After(eventWait)
	for {
		select {
		case r := <-d.res:
			if r.RequestID == tp.RequestID {
				return r.Status
			}
		case <-deadline:
			t.Fatalf("no response to %s", topic)
		}
	}
}

func (d *rawDevice) expectLost(t *testing.T, what string) {
	t.Helper()
	select {
	case <-d.lost:
	case <-time.After(eventWait):
		t.Fatalf("%s: connection not closed by the hub", what)
	}
}

func (d *rawDevice) expectUp(t *testing.T, what string) {
	t.Helper()
	if st := d.request(t, "$iothub/twin/GET/?$rid=up"+strconv.Itoa(rand.IntN(1e9)), nil); st != 200 {
		t.Fatalf("%s: GET after it answered %d", what, st)
	}
	select {
	case err := <-d.lost:
		t.Fatalf("%s: connection closed: %v", what, err)
	default:
	}
}

// wellBehaved checks that a fresh device still connects and does a twin
// round trip (GET, reported PATCH, desired notification).
func wellBehaved(t *testing.T, h *Hub) {
	t.Helper()
	id := fmt.Sprintf("good-%d", rand.IntN(1e9))
	if err := h.RegisterDevice(id, key3); err != nil {
		t.Fatal(err)
	}
	c := iothubtest.Dial(t, cfgFor(h, id, key3))
	if u := iothubtest.NextDesired(t, c); !u.Full {
		t.Fatalf("first event %+v", u)
	}
	ctx := context.Background()
	if v, err := c.UpdateReported(ctx, json.RawMessage(`{"ok":true}`)); err != nil || v != 2 {
		t.Fatalf("reported: %d %v", v, err)
	}
	if _, err := h.SetDesired(id, json.RawMessage(`{"x":1}`)); err != nil {
		t.Fatal(err)
	}
	if u := iothubtest.NextDesired(t, c); u.Full || u.Version != 2 {
		t.Fatalf("desired notification %+v", u)
	}
	tw, err := c.GetTwin(ctx)
	if err != nil || string(tw.Reported) != `{"$version":2,"ok":true}` {
		t.Fatalf("twin %s %v", tw.Reported, err)
	}
}

func TestRefusedConnects(t *testing.T) {
	h := newHub(t, Options{})
	_ = h.RegisterDevice("dev1", key1)
	_ = h.RegisterDevice("dev2", key2)
	later := time.Now().Add(time.Hour)

	// dev1 stays connected throughout: refused CONNECTs with its id must not kick it.
	var kicked atomic.Int32
	cfg := cfgFor(h, "dev1", key1)
	cfg.OnConnectionChange = func(up bool, _ error) {
		if !up {
			kicked.Add(1)
		}
	}
	c1 := iothubtest.Dial(t, cfg)
	_ = iothubtest.NextDesired(t, c1)

	user := func(host, dev string) string { return iothub.Username(host, dev, "", "", modelID) }
	for _, tc := range []struct {
		name string
		o    rawOpts
	}{
		{"wrong key", rawOpts{"dev1", user(testHost, "dev1"), sasFor(testHost, "dev1", key2, later), ""}},
		{"expired token", rawOpts{"dev1", user(testHost, "dev1"), sasFor(testHost, "dev1", key1, time.Now().Add(-time.Minute)), ""}},
		{"token of another device", rawOpts{"dev1", user(testHost, "dev1"), sasFor(testHost, "dev2", key2, later), ""}},
		{"token for another hub", rawOpts{"dev1", user(testHost, "dev1"), sasFor("other.hub", "dev1", key1, later), ""}},
		{"username for another hub", rawOpts{"dev1", user("other.hub", "dev1"), sasFor("other.hub", "dev1", key1, later), ""}},
		{"username for another device", rawOpts{"dev1", user(testHost, "dev2"), sasFor(testHost, "dev2", key2, later), ""}},
		{"client id of another device", rawOpts{"dev2", user(testHost, "dev1"), sasFor(testHost, "dev1", key1, later), ""}},
		{"empty client id", rawOpts{"", user(testHost, "dev1"), sasFor(testHost, "dev1", key1, later), ""}},
		{"module client id", rawOpts{"dev1/mod", user(testHost, "dev1"), sasFor(testHost, "dev1", key1, later), ""}},
		{"username without api-version", rawOpts{"dev1", testHost + "/dev1/?model-id=x", sasFor(testHost, "dev1", key1, later), ""}},
		{"username garbage", rawOpts{"dev1", "\x01\x02garbage", sasFor(testHost, "dev1", key1, later), ""}},
		{"password garbage", rawOpts{"dev1", user(testHost, "dev1"), "SharedAccessSignature sr=%zz&sig=&se=x", ""}},
		{"no password (not an X.509 device)", rawOpts{"dev1", user(testHost, "dev1"), "", ""}},
		{"unknown device", rawOpts{"nodev", user(testHost, "nodev"), sasFor(testHost, "nodev", key1, later), ""}},
		{"will to another topic", rawOpts{"dev1", user(testHost, "dev1"), sasFor(testHost, "dev1", key1, later), "devices/dev2/messages/events/"}},
	} {
		if d, err := connectRaw(t, h, tc.o); err == nil {
			d.c.Disconnect(0)
			t.Errorf("%s: CONNECT accepted", tc.name)
		}
	}
	// MQTT 5 (IoT Hub speaks 3.1.1): refused with "unsupported protocol version".
	c := rawTCP(t, h)
	pk := connectPacket("dev1", user(testHost, "dev1"), sasFor(testHost, "dev1", key1, later))
	pk.ProtocolVersion = 5
	if code := writeConnect(t, c, pk); code != packets.ErrUnsupportedProtocolVersion.Code {
		t.Errorf("MQTT 5 CONNACK code %#x", code)
	}
	expectClosed(t, c, "MQTT 5")

	time.Sleep(100 * time.Millisecond)
	if kicked.Load() != 0 || !h.Connected("dev1") {
		t.Fatal("a refused CONNECT dropped the connected device")
	}
	if _, err := c1.GetTwin(context.Background()); err != nil {
		t.Fatal(err)
	}
	// A will on its own telemetry topic is fine.
	o := goodRaw(h, "dev2", key2)
	o.will = "devices/dev2/messages/events/"
	d2 := mustRaw(t, h, o)
	d2.subscribe(t, iothub.FilterTwinResponses)
	d2.expectUp(t, "will on telemetry")
	wellBehaved(t, h)
}

func TestForbiddenPublishesDisconnect(t *testing.T) {
	h := newHub(t, Options{})
	_ = h.RegisterDevice("dev1", key1)
	_ = h.RegisterDevice("dev2", key2)
	for _, qos := range []byte{0, 1} {
		for _, topic := range []string{
			"devices/dev2/messages/events/",            // another device's telemetry
			"devices/dev2/messages/devicebound/x",      // another device's C2D
			"devices/dev1/messages/devicebound/x",      // its own C2D: service → device only
			"$iothub/methods/res/200/?$rid=1",          // no subscription to methods
			"$iothub/methods/POST/reboot/?$rid=1",      // requests come from the service
			"$iothub/something/else",                   // not an IoT Hub topic
			"$SYS/broker/uptime",                       // broker internals
			"plain/topic",                              // arbitrary
			"devices/dev1/messages/eventsX",            // lookalike
			"devices/dev1/modules/m/messages/events/x", // module topic of a device identity
		} {
			d := mustRaw(t, h, goodRaw(h, "dev1", key1))
			d.subscribe(t, iothub.FilterTwinResponses)
			d.publish(t, topic, qos, []byte(`{}`))
			d.expectLost(t, fmt.Sprintf("QoS %d publish to %s", qos, topic))
		}
	}
	// QoS 2 is not supported by IoT Hub: the connection is closed.
	d := mustRaw(t, h, goodRaw(h, "dev1", key1))
	d.publish(t, "$iothub/twin/GET/?$rid=q2", 2, nil)
	d.expectLost(t, "QoS 2 publish")

	// Allowed: telemetry (dropped), RETAIN ignored, method responses once subscribed.
	d = mustRaw(t, h, goodRaw(h, "dev1", key1))
	d.subscribe(t, iothub.FilterTwinResponses)
	d.publish(t, "devices/dev1/messages/events/", 1, []byte("telemetry"))
	d.publish(t, "devices/dev1/messages/events/a=b", 0, []byte("telemetry"))
	d.c.Publish("devices/dev1/messages/events/", 1, true, []byte("retained")).WaitTimeout(5 * time.Second)
	d.expectUp(t, "telemetry")
	d.subscribe(t, "$iothub/methods/POST/#")
	d.publish(t, "$iothub/methods/res/200/?$rid=1", 1, []byte(`{}`))
	d.expectUp(t, "method response with subscription")
	// No device publish reaches another client.
	wellBehaved(t, h)
}

func TestRefusedSubscriptions(t *testing.T) {
	h := newHub(t, Options{})
	_ = h.RegisterDevice("dev1", key1)
	d := mustRaw(t, h, goodRaw(h, "dev1", key1))
	refused := []string{
		"#", "+/#", "$iothub/#", "$iothub/+/res/#", "$iothub/methods/res/#",
		"devices/dev2/messages/devicebound/#", "devices/#", "devices/dev1/messages/events/#",
		"$SYS/#", "$share/g/$iothub/twin/res/#", "other/topic",
	}
	res := d.subscribe(t, refused...)
	for _, f := range refused {
		if res[f] != 0x80 {
			t.Errorf("SUBSCRIBE %s: granted %#x", f, res[f])
		}
	}
	allowed := []string{iothub.FilterTwinResponses, iothub.FilterDesired, "$iothub/methods/POST/#", "devices/dev1/messages/devicebound/#"}
	res = d.subscribe(t, allowed...)
	for _, f := range allowed {
		if res[f] > 1 {
			t.Errorf("SUBSCRIBE %s: %#x", f, res[f])
		}
	}
	d.expectUp(t, "after refused subscriptions")
}

func TestOversizedPayloads(t *testing.T) {
	h := newHub(t, Options{})
	_ = h.RegisterDevice("dev1", key1)
	d := mustRaw(t, h, goodRaw(h, "dev1", key1))
	d.subscribe(t, iothub.FilterTwinResponses)
	rep := "$iothub/twin/PATCH/properties/reported/?$rid="
	big := func(n int) []byte { return []byte(`{"big":"` + strings.Repeat("x", n) + `"}`) }

	// One patch above 32 KB: 413.
	if st := d.request(t, rep+"1", big(MaxPatchSize)); st != 413 {
		t.Fatalf("33 KB patch: %d", st)
	}
	// Patches that each fit but together exceed the 32 KB reported document: the
	// one that crosses the limit gets 413 and is not applied.
	for i := range 3 {
		p := []byte(fmt.Sprintf(`{"p%d":"%s"}`, i, strings.Repeat("y", 12*1024)))
		want := 204
		if i == 2 {
			want = 413
		}
		if st := d.request(t, rep+"a"+strconv.Itoa(i), p); st != want {
			t.Fatalf("patch %d: %d, want %d", i, st, want)
		}
	}
	tw, _ := h.Twin("dev1")
	r := asMap(t, tw)["reported"].(map[string]any)
	if r["$version"].(float64) != 3 || r["p2"] != nil {
		t.Fatalf("reported after 413: version %v, p2 present %v", r["$version"], r["p2"] != nil)
	}
	// Shrinking is always possible.
	if st := d.request(t, rep+"del", []byte(`{"p0":null,"p1":null}`)); st != 204 {
		t.Fatalf("delete: %d", st)
	}
	// Nested deeper than 10 levels: 400.
	deep := strings.Repeat(`{"a":`, 11) + "1" + strings.Repeat("}", 11)
	if st := d.request(t, rep+"deep", []byte(deep)); st != 400 {
		t.Fatalf("deep patch: %d", st)
	}
	// Not JSON: 400.
	if st := d.request(t, rep+"nj", []byte("\x00\xff not json")); st != 400 {
		t.Fatalf("garbage patch: %d", st)
	}
	d.expectUp(t, "after 413s")

	// An MQTT message above 256 KB: the connection is closed (IoT Hub's message limit).
	d.publish(t, rep+"huge", 0, big(300*1024))
	d.expectLost(t, "300 KB publish")

	// 10 MB announced in the fixed header, before and after CONNECT: the hub closes
	// the connection after reading the header instead of buffering the packet.
	for _, afterConnect := range []bool{false, true} {
		c := rawTCP(t, h)
		if afterConnect {
			o := goodRaw(h, "dev1", key1)
			if code := writeConnect(t, c, connectPacket(o.clientID, o.username, o.password)); code != 0 {
				t.Fatalf("CONNACK %#x", code)
			}
		}
		typ := byte(0x30) // PUBLISH QoS 0
		if !afterConnect {
			typ = 0x10 // CONNECT
		}
		sent, werr := streamHuge(c, typ, 10<<20)
		expectClosed(t, c, fmt.Sprintf("10 MB packet (after CONNECT: %v)", afterConnect))
		if err := <-werr; err == nil {
			t.Errorf("the hub took all of a 10 MB packet (after CONNECT: %v)", afterConnect)
		}
		t.Logf("10 MB packet (after CONNECT: %v): closed after %d bytes written", afterConnect, sent.Load())
	}
	wellBehaved(t, h)
}

// streamHuge writes a fixed header announcing n bytes, then n bytes, in the
// background.
func streamHuge(c net.Conn, typ byte, n int) (*atomic.Int64, chan error) {
	var sent atomic.Int64
	done := make(chan error, 1)
	go func() {
		_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		hdr := append([]byte{typ}, remLen(n)...)
		if typ == 0x30 {
			hdr = append(hdr, 0, 3, 'a', '/', 'b')
		}
		if _, err := c.Write(hdr); err != nil {
			done <- err
			return
		}
		chunk := bytes.Repeat([]byte{'z'}, 64*1024)
		for total := 0; total < n; total += len(chunk) {
			if _, err := c.Write(chunk); err != nil {
				done <- err
				return
			}
			sent.Add(int64(len(chunk)))
		}
		done <- nil
	}()
	return &sent, done
}

func TestTwinFlood(t *testing.T) {
	h := newHub(t, Options{TwinFloodLimit: -1}) // count 429s, never disconnect
	_ = h.RegisterDevice("flood", key1)
	_ = h.RegisterDevice("quiet", key2)
	q := iothubtest.Dial(t, cfgFor(h, "quiet", key2))
	_ = iothubtest.NextDesired(t, q)
	f := mustRaw(t, h, goodRaw(h, "flood", key1))
	f.subscribe(t, iothub.FilterTwinResponses)

	const n = 5000
	var (
		wg       sync.WaitGroup
		stop     = make(chan struct{})
		quietN   atomic.Int32
		quietMax atomic.Int64
		quietErr atomic.Value
	)
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			start := time.Now()
			if _, err := q.GetTwin(context.Background()); err != nil {
				quietErr.Store(err)
				return
			}
			el := time.Since(start)
			if int64(el) > quietMax.Load() {
				quietMax.Store(int64(el))
			}
			quietN.Add(1)
			time.Sleep(5 * time.Millisecond)
		}
	})
	start := time.Now()
	for i := range n {
		f.c.Publish("$iothub/twin/GET/?$rid=f"+strconv.Itoa(i), 0, false, []byte(nil))
	}
	statuses := map[int]int{}
	deadline := time.After(60 * time.Second)
	for got := 0; got < n; got++ {
		select {
		case r := <-f.res:
			statuses[r.Status]++
		case <-deadline:
			t.Fatalf("only %d responses of %d: %v", got, n, statuses)
		}
	}
	elapsed := time.Since(start)
	close(stop)
	wg.Wait()
	t.Logf("flood of %d GETs in %v: %v; quiet device: %d GETs, slowest %v", n, elapsed, statuses, quietN.Load(), time.Duration(quietMax.Load()))

	if err, _ := quietErr.Load().(error); err != nil {
		t.Fatalf("quiet device during the flood: %v", err)
	}
	if quietN.Load() == 0 || time.Duration(quietMax.Load()) > time.Second {
		t.Fatalf("quiet device: %d GETs, slowest %v", quietN.Load(), time.Duration(quietMax.Load()))
	}
	maxOK := DefaultTwinBurst + int(elapsed.Seconds()*DefaultTwinRate) + 2
	if statuses[200] < DefaultTwinBurst || statuses[200] > maxOK || statuses[429] != n-statuses[200] {
		t.Fatalf("statuses %v, want %d..%d 200s and 429 for the rest", statuses, DefaultTwinBurst, maxOK)
	}
	// The quota refills: after a pause the flooding device is served again.
	time.Sleep(200 * time.Millisecond)
	f.expectUp(t, "after the flood")
	wellBehaved(t, h)
}

func TestTwinFloodDisconnects(t *testing.T) {
	// Almost no refill, so that the counts are exact: 20 served, 200 refused,
	// then the disconnect.
	h := newHub(t, Options{TwinRate: 0.001, TwinBurst: 20, TwinFloodLimit: 200})
	_ = h.RegisterDevice("flood", key1)
	o := goodRaw(h, "flood", key1)
	c := rawTCP(t, h)
	if code := writeConnect(t, c, connectPacket(o.clientID, o.username, o.password)); code != 0 {
		t.Fatalf("CONNACK %#x", code)
	}
	gets := func(from, to int) []byte {
		var b bytes.Buffer
		for i := from; i < to; i++ {
			pub := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: "$iothub/twin/GET/?$rid=f" + strconv.Itoa(i)}
			if err := pub.PublishEncode(&b); err != nil {
				t.Fatal(err)
			}
		}
		return b.Bytes()
	}
	var b bytes.Buffer
	sub := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1},
		PacketID:    1,
		Filters:     packets.Subscriptions{{Filter: iothub.FilterTwinResponses}},
	}
	if err := sub.SubscribeEncode(&b); err != nil {
		t.Fatal(err)
	}
	b.Write(gets(0, 220))
	if _, err := c.Write(b.Bytes()); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	statuses := map[int]int{}
	for range 220 {
		topic, err := readPublish(r)
		if err != nil {
			t.Fatalf("after %v: %v", statuses, err)
		}
		tp, err := iothub.ParseTopic(topic)
		if err != nil {
			t.Fatal(err)
		}
		statuses[tp.Status]++
	}
	if statuses[200] != 20 || statuses[429] != 200 {
		t.Fatalf("answers %v, want 20 × 200 then 200 × 429", statuses)
	}
	// The rest of the flood: the first request beyond the limit closes the connection.
	go func() {
		_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		_, _ = c.Write(gets(220, 5000))
	}()
	topic, err := readPublish(r)
	var ne net.Error
	switch {
	case err == nil:
		t.Fatalf("answer %s after the flood limit", topic)
	case errors.As(err, &ne) && ne.Timeout():
		t.Fatal("flooding device not disconnected")
	}
	// The socket closes first; the broker drops the client right after.
	for deadline := time.Now().Add(5 * time.Second); h.Connected("flood"); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("still connected 5 s after the connection was closed")
		}
	}
	wellBehaved(t, h)
}

func TestTwinQuotaCounts(t *testing.T) {
	h := &Hub{opts: Options{TwinRate: 1e-9, TwinBurst: 20, TwinFloodLimit: 200}, quota: map[string]*bucket{}}
	for i := range 20 {
		if ok, _ := h.allowTwin("d"); !ok {
			t.Fatalf("request %d refused", i)
		}
	}
	for i := range 200 {
		if ok, flood := h.allowTwin("d"); ok || flood {
			t.Fatalf("refused request %d: ok %v flood %v", i, ok, flood)
		}
	}
	if ok, flood := h.allowTwin("d"); ok || !flood {
		t.Fatalf("request beyond the flood limit: ok %v flood %v", ok, flood)
	}
	if ok, _ := h.allowTwin("other"); !ok {
		t.Fatal("quota shared between devices")
	}
	h.opts.TwinRate = -1
	for range 1000 {
		if ok, _ := h.allowTwin("d"); !ok {
			t.Fatal("refused with the quota off")
		}
	}
}

// readPublish reads server packets until a PUBLISH and returns its topic.
func readPublish(r *bufio.Reader) (string, error) {
	for {
		typ, err := r.ReadByte()
		if err != nil {
			return "", err
		}
		n, mult := 0, 1
		for {
			d, err := r.ReadByte()
			if err != nil {
				return "", err
			}
			n += int(d&0x7f) * mult
			mult *= 128
			if d&0x80 == 0 {
				break
			}
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(r, body); err != nil {
			return "", err
		}
		if typ>>4 == packets.Publish && len(body) >= 2 {
			l := int(body[0])<<8 | int(body[1])
			if 2+l <= len(body) {
				return string(body[2 : 2+l]), nil
			}
		}
	}
}

func TestGarbageOnTheTCPPort(t *testing.T) {
	h := newHub(t, Options{ConnectTimeout: 500 * time.Millisecond})
	_ = h.RegisterDevice("dev1", key1)
	o := goodRaw(h, "dev1", key1)
	rng := rand.New(rand.NewPCG(1, 2))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.UintN(256))
		}
		return b
	}
	cases := map[string][]byte{
		"random bytes":            random(4096),
		"HTTP request":            []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		"TLS hello on plain port": {0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03},
		"bad remaining length":    {0x10, 0xff, 0xff, 0xff, 0xff, 0xff},
		"PUBLISH before CONNECT":  append([]byte{0x30, 0x07, 0x00, 0x03, 'a', '/', 'b'}, 'x', 'y'),
		"CONNECT with junk body":  append([]byte{0x10, 0x20}, random(0x20)...),
		"truncated CONNECT":       {0x10, 0x7f, 0x00, 0x04, 'M', 'Q'},
		"reserved packet type":    {0xf0, 0x00},
	}
	for i := range 50 {
		b := random(1 + rng.IntN(300))
		b[0] = byte(rng.IntN(16)) << 4
		cases[fmt.Sprintf("random packet %d", i)] = b
	}
	for name, b := range cases {
		c := rawTCP(t, h)
		_, _ = c.Write(b)
		expectClosed(t, c, name)
	}
	// Garbage after a valid CONNECT.
	for i := range 20 {
		c := rawTCP(t, h)
		pk := connectPacket(o.clientID, o.username, o.password)
		pk.Connect.Keepalive = 1 // a truncated packet times out after 1.5 s
		if code := writeConnect(t, c, pk); code != 0 {
			t.Fatalf("CONNACK %#x", code)
		}
		b := random(1 + rng.IntN(300))
		if i%2 == 0 {
			b[0] = 0xf0 // reserved type
		}
		_, _ = c.Write(b)
		expectClosed(t, c, fmt.Sprintf("garbage after CONNECT %d", i))
	}
	// A PUBLISH whose topic has wildcards, after CONNECT.
	c := rawTCP(t, h)
	if code := writeConnect(t, c, connectPacket(o.clientID, o.username, o.password)); code != 0 {
		t.Fatalf("CONNACK %#x", code)
	}
	_, _ = c.Write([]byte{0x30, 0x05, 0x00, 0x03, '$', '/', '#'})
	expectClosed(t, c, "wildcard publish topic")
	// A connection that never sends CONNECT is closed after ConnectTimeout.
	c = rawTCP(t, h)
	start := time.Now()
	expectClosed(t, c, "silent connection")
	if el := time.Since(start); el > 3*time.Second {
		t.Fatalf("silent connection closed after %v", el)
	}
	// Many connections at once, half-open.
	var conns []net.Conn
	for range 200 {
		conns = append(conns, rawTCP(t, h))
	}
	wellBehaved(t, h)
	for _, c := range conns {
		_ = c.Close()
	}
}

func rawTCP(t *testing.T, h *Hub) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", h.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func connectPacket(clientID, username, password string) packets.Packet {
	return packets.Packet{
		FixedHeader:     packets.FixedHeader{Type: packets.Connect},
		ProtocolVersion: 4,
		Connect: packets.ConnectParams{
			ProtocolName:     []byte("MQTT"),
			Clean:            true,
			Keepalive:        30,
			ClientIdentifier: clientID,
			UsernameFlag:     true,
			Username:         []byte(username),
			PasswordFlag:     password != "",
			Password:         []byte(password),
		},
	}
}

// writeConnect sends pk and returns the CONNACK's return code.
func writeConnect(t *testing.T, c net.Conn, pk packets.Packet) byte {
	t.Helper()
	var b bytes.Buffer
	if pk.ProtocolVersion == 5 {
		pk.Connect.ProtocolName = []byte("MQTT")
	}
	if err := pk.ConnectEncode(&b); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(b.Bytes()); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	hdr := make([]byte, 2)
	if _, err := io.ReadFull(c, hdr); err != nil || hdr[0] != 0x20 {
		t.Fatalf("CONNACK: % x %v", hdr, err)
	}
	body := make([]byte, hdr[1])
	if _, err := io.ReadFull(c, body); err != nil || len(body) < 2 {
		t.Fatalf("CONNACK body: % x %v", body, err)
	}
	_ = c.SetReadDeadline(time.Time{})
	return body[1]
}

// expectClosed reads (and discards) until the hub closes the connection.
func expectClosed(t *testing.T, c net.Conn, what string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("%s: connection still open after 5 s", what)
		}
		return
	}
}

func remLen(n int) []byte {
	var b []byte
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if n == 0 {
			return b
		}
	}
}
