// Package iothub is a minimal Azure IoT Hub device client speaking MQTT 3.1.1
// (via github.com/eclipse/paho.mqtt.golang), covering what a Device Update
// agent needs and nothing more:
//
//   - device connection strings (HostName, DeviceId, SharedAccessKey,
//     ModuleId, GatewayHostName, x509=true);
//   - SAS tokens (adu-protocol.md §1.3) minted on every (re)connect and renewed
//     before expiry by a forced reconnect; X.509 client certificates;
//   - TLS to port 8883 with Microsoft's IoT Hub roots built in (or a custom
//     pool, see LoadCAFile); plain TCP only when explicitly requested (local
//     emulator);
//   - optionally MQTT over WebSockets (Config.WebSocket): TLS to port 443,
//     then a WebSocket to /$iothub/websocket with subprotocol "mqtt"
//     (SAS clients add ?iothub-no-client-cert=true, as the Azure SDKs do),
//     carrying the same MQTT session; SAS and X.509 both work over it. An HTTP
//     proxy is used by tunnelling through it in Config.Dial (ProxyDial: HTTP
//     CONNECT); Transport opens these connections for other MQTT endpoints
//     (the Device Provisioning Service, package dps);
//   - the device twin: full GET, reported-property PATCH and desired-property
//     notifications with $rid request tracking, plus a full twin GET after
//     every (re)connect, delivered as a "full twin" event.
//
// Out of scope: device-to-cloud telemetry, cloud-to-device messages, direct
// methods, DPS provisioning (package dps), module twins beyond the CONNECT/SAS identity,
// and MQTT 5.
//
// The package keeps no package-level mutable state, never panics on input,
// and does not log unless a *slog.Logger is supplied in Config.
package iothub
