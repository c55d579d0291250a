// Package adu is the Azure Device Update (ADU) service protocol as the device sees it: the
// deviceUpdate PnP component's service (desired) and agent (reported) properties and the ack
// of the writable service property (spec §2), update manifests v4/v5 including detached
// (mini) manifests (§3), verification of the service's manifest signature — a JWS whose
// header carries the signing key signed by a root key — with root-key package deny lists
// (§5), and result codes with their two wire forms (§7).
//
// It neither connects to IoT Hub nor downloads or installs anything: it parses what the
// service sends, decides whether to trust it, and renders what the agent reports.
//
// The manifest signature binds the exact bytes of the updateManifest string; Verify always
// hashes the bytes it is given and never re-serialises a parsed manifest.
package adu

//go:generate go run ./internal/genroots -in testdata/rootkeys.json -out rootkeys_builtin.go
