// Package hub is a local stand-in for Azure IoT Hub and the Device Update
// service, so the whole update loop runs on one machine (aduhub, the demo,
// tests).
//
// Hub is the device side of IoT Hub: an embedded mochi-mqtt broker that
// authenticates devices like IoT Hub does (CONNECT username format, SAS
// tokens checked against registered device keys, or X.509 client
// certificates by SHA-256 thumbprint) and answers the device twin topics
// (GET, reported PATCH, desired notifications). With Options.DataDir the
// device registry and the twins (both documents with their $versions) are
// stored there, one JSON file per device written atomically, and restored by
// New. LoadOrCreateCA makes (and keeps) a local CA and a server certificate
// for TLS, whose PEM devices trust instead of the Azure roots.
//
// Module identities (RegisterModule) connect as "{deviceId}/{moduleId}" with their own key
// and twin, and are listed and deployed to under that id. The Hub is also a Device
// Provisioning Service on the same listener (id scope, individual and group enrollments:
// AddEnrollment; see dps.go). With Options.WebSocketAddress it serves MQTT over WebSockets
// at /$iothub/websocket as well.
//
// Scope of Hub: MQTT 3.1.1 over TCP, TLS or WebSockets (SAS only over WebSockets), twins only (no telemetry routing, C2D messages, direct
// methods, tags, or service-side REST API). One connection per device id: a
// new CONNECT takes over (drops) the previous connection. RemoveDevice deletes
// a device as IoT Hub does (connection and session dropped, credentials and
// twin gone).
//
// Bad device behaviour is refused as IoT Hub refuses it, and the hub stays
// up: a CONNECT with a wrong, expired or foreign SAS token, a username for
// another hub or device, a client id other than the username's device, an
// unknown device, MQTT other than 3.1.1 or a will topic other than the
// device's telemetry topic gets a refusing CONNACK; a connection that sends
// no CONNECT within Options.ConnectTimeout is closed; a PUBLISH to a topic
// the device may not use (another device's topics, $iothub/methods/res/
// without a subscription to $iothub/methods/POST/#, anything outside
// $iothub/twin/ and its own devices/{id}/messages/events/) or with QoS 2 closes
// the connection; a SUBSCRIBE outside $iothub/twin/, $iothub/methods/POST/ and
// its own devices/{id}/messages/devicebound/ is refused (SUBACK 0x80); any
// MQTT packet above 256 KB closes the connection before it is buffered; a
// reported patch above 32 KB, or one that would make the reported document
// larger than 32 KB, gets 413, one nested deeper than 10 levels 400; twin
// requests above a device's quota (a token bucket per device, see
// Options.TwinRate) get 429, and a device that keeps flooding is disconnected.
// Telemetry (devices/{id}/messages/events/) is accepted and dropped.
//
// Signer signs update manifests (and root-key packages, spec §5.5) the way the Device
// Update service does, so that adu.Verify accepts them when it trusts the signer's root key;
// LoadOrCreateSigner keeps its keys in a folder.
//
// Service is the Device Update service side on top of a Hub and a Signer,
// kept in its own DataDir: Import (import manifest checked with
// manifestgen's validator, files checked and copied, opaque file ids, the
// update manifest v5 in the real manifests' shape, signed), FileHandler (the
// payload file server, with Range), Deploy to a group of devices selected by
// their reported deviceProperties and the update's compatibility, Cancel,
// Retry (retryTimestamp, failed devices only) and per-device results
// (Status, Deployments) computed from the reported twins as the service does.
// Not modelled: device classes and groups as stored objects (a group is the
// property filter given to Deploy), deployment start times, automatic
// rollback policies, delta updates' download handlers beyond passing them
// through, detached (mini) manifests for large update manifests, root-key
// package publication (only its URL can be configured), the REST API.
//
// Local starts the whole stand-in on one data folder, as aduhub serve, its demo and the
// end-to-end tests run it: the HTTP listener of the update files, the local CA (with TLS),
// the Hub, the signer and the Service; Stack.Close stops them in the reverse order.
//
// The package never logs unless a Logger is set and holds no package-level
// mutable state.
package hub
