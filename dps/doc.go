// Package dps provisions a device through the Azure IoT Hub Device Provisioning Service
// (DPS) over MQTT 3.1.1, the way the Azure device SDKs do, and keeps the assignment.
//
// Register connects to the DPS endpoint (global.azure-devices-provisioning.net by default;
// port 8883, or MQTT over WebSockets on 443, through an HTTP proxy if Config.Dial tunnels)
// as client id {registrationId} with the username
// "{idScope}/registrations/{registrationId}/api-version=2019-03-31" and, for a symmetric
// key, a SAS token for "{idScope}/registrations/{registrationId}" (key name "registration");
// an X.509 device presents its client certificate and no password. It subscribes to
// "$dps/registrations/res/#", publishes the register request to
// "$dps/registrations/PUT/iotdps-register/?$rid={rid}" and polls
// "$dps/registrations/GET/iotdps-get-operationstatus/?$rid={rid}&operationId={id}" after the
// retry-after the service asks for, until the operation is assigned (the IoT Hub host and
// the device id), or failed.
//
// A device in an enrollment group authenticates with its own key, derived from the group
// key: DeriveKey(groupKey, registrationId) = base64(HMAC-SHA256(groupKey, registrationId)).
//
// Replies are input from the network: ParseReply takes a topic and payload of at most
// MaxReply bytes and checks every field it uses; the whole connection reads at most
// MaxSessionBytes. Assignment is what a device keeps (SaveAssignment writes it atomically,
// LoadAssignment refuses one made for another id scope or registration id), so that it
// connects to its hub without DPS after a restart and registers again only when the hub
// refuses it (device moved, key rotated).
//
// The package keeps no package-level mutable state and does not log unless Config.Logger
// is set.
package dps
