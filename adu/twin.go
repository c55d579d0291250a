package adu

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
)

// Model ids a device announces (CONNECT model-id, deviceProperties.contractModelId), spec §2.1.
const (
	ModelContractV2 = "dtmi:azure:iot:deviceUpdateContractModel;2"
	ModelV2         = "dtmi:azure:iot:deviceUpdateModel;2"
	ModelContractV3 = "dtmi:azure:iot:deviceUpdateContractModel;3"
	ModelV3         = "dtmi:azure:iot:deviceUpdateModel;3"
)

// Interfaces of the deviceUpdate component. InterfaceV1 reports one integer
// extendedResultCode; InterfaceV2 a string extendedResultCodes and adds rootKeyPackageUrl.
const (
	InterfaceV1 = "dtmi:azure:iot:deviceUpdate;1"
	InterfaceV2 = "dtmi:azure:iot:deviceUpdate;2"
)

// ComponentName is the PnP component carrying the ADU properties.
const ComponentName = "deviceUpdate"

// InterfaceOf returns the deviceUpdate interface a model id implies (§2.1). An interface id
// is returned as it is.
func InterfaceOf(model string) (string, error) {
	switch model {
	case ModelContractV2, ModelV2, InterfaceV1:
		return InterfaceV1, nil
	case ModelContractV3, ModelV3, InterfaceV2:
		return InterfaceV2, nil
	}
	return "", fmt.Errorf("adu: unknown Device Update model %q", model)
}

// Action is workflow.action (§2.3, §6.1).
type Action int

const (
	ActionProcessDeployment Action = 3
	ActionCancel            Action = 255
)

// NoDeployment is the workflow id the service sends with ActionCancel when the device's group
// has no deployment.
const NoDeployment = "nodeployment"

// Workflow is the service's workflow object, echoed by the agent in its reports.
type Workflow struct {
	Action         Action `json:"action"`
	ID             string `json:"id"`
	RetryTimestamp string `json:"retryTimestamp,omitempty"`
}

// ServiceProperties is the deviceUpdate component's writable "service" property (§2.3). Null
// members (cancel) read as absent: "" and a nil map. Null URLs in fileUrls are skipped.
type ServiceProperties struct {
	Workflow *Workflow // nil when absent or null
	// UpdateManifest is the manifest JSON text exactly as sent (after JSON unescaping): the
	// bytes the signature covers.
	UpdateManifest          string
	UpdateManifestSignature string            // compact JWS
	FileURLs                map[string]string // file id → URL
	RootKeyPackageURL       string            // interface ;2 only
	// Raw is the service object as received, for an ack that echoes it.
	Raw json.RawMessage
}

// IsCancel tells whether the service asks to cancel (workflow.action 255).
func (s *ServiceProperties) IsCancel() bool {
	return s != nil && s.Workflow != nil && s.Workflow.Action == ActionCancel
}

// ParseServiceProperties parses the "service" object itself (the value under
// deviceUpdate.service). Unknown members are ignored.
func ParseServiceProperties(service []byte) (*ServiceProperties, error) {
	return parseService(service, "service")
}

func parseService(raw json.RawMessage, path string) (*ServiceProperties, error) {
	o, err := mustObject(raw, path)
	if err != nil {
		return nil, err
	}
	s := &ServiceProperties{Raw: append(json.RawMessage(nil), bytes.TrimSpace(raw)...)}
	if w, ok, err := o.obj("workflow"); err != nil {
		return nil, err
	} else if ok {
		if !w.has("action") {
			return nil, pathErr(join(w.path, "action"), "missing number")
		}
		a, err := integer(w.m["action"], join(w.path, "action"), math.MinInt32, math.MaxInt32, false)
		if err != nil {
			return nil, err
		}
		s.Workflow = &Workflow{Action: Action(a)}
		if s.Workflow.ID, _, err = w.str("id"); err != nil {
			return nil, err
		}
		if s.Workflow.RetryTimestamp, _, err = w.str("retryTimestamp"); err != nil {
			return nil, err
		}
	}
	if raw := o.m["updateManifest"]; !isNull(raw) && kind(raw) != "a string" {
		return nil, pathErr(join(path, "updateManifest"), "want a string holding the manifest JSON, got %s", kind(raw))
	}
	if s.UpdateManifest, _, err = o.str("updateManifest"); err != nil {
		return nil, err
	}
	if s.UpdateManifestSignature, _, err = o.str("updateManifestSignature"); err != nil {
		return nil, err
	}
	if s.RootKeyPackageURL, _, err = o.str("rootKeyPackageUrl"); err != nil {
		return nil, err
	}
	if s.FileURLs, _, err = stringMap(o.m["fileUrls"], join(path, "fileUrls"), true); err != nil {
		return nil, err
	}
	return s, nil
}

// Desired is what a twin document says about the deviceUpdate component.
type Desired struct {
	// Version is the desired $version: the "av" of the ack. HasVersion is false when the
	// document carries none.
	Version    int64
	HasVersion bool
	// Service is nil when the document holds no deviceUpdate.service (a patch for another
	// component or property).
	Service *ServiceProperties
}

// ParseDesired parses a twin document as the device receives it: a full twin GET response
// ({"desired":{…},"reported":{…}}), a desired-properties PATCH ({"deviceUpdate":{…},
// "$version":N}), or a service-side twin ({"properties":{"desired":{…}}}). "__t",
// "$metadata" and unknown members are ignored. Errors name the JSON path.
func ParseDesired(doc []byte) (*Desired, error) {
	svc, path, v, err := desiredService(doc, ComponentName)
	if err != nil {
		return nil, err
	}
	out := &Desired{Version: v.version, HasVersion: v.has}
	if svc != nil {
		if out.Service, err = parseService(svc, path); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// desiredService returns the writable "service" property of component in a twin document
// (nil when absent or null) with its JSON path, and the desired $version.
func desiredService(doc []byte, component string) (json.RawMessage, string, desiredVersion, error) {
	d, v, err := desiredHead(doc)
	if err != nil {
		return nil, "", v, err
	}
	c, ok, err := d.obj(component)
	if err != nil || !ok || !c.has("service") {
		return nil, "", v, err
	}
	return c.m["service"], join(c.path, "service"), v, nil
}

// desiredObject returns the desired properties of a twin document in any of the forms
// ParseDesired takes.
func desiredObject(doc []byte) (object, error) {
	top, err := mustObject(doc, "")
	if err != nil {
		return object{}, err
	}
	if p, ok, err := top.obj("properties"); err != nil {
		return object{}, err
	} else if ok {
		top = p
	}
	if top.has("desired") {
		return mustObject(top.m["desired"], join(top.path, "desired"))
	}
	return top, nil
}

// desiredVersion is the desired $version (has: the document carries one).
type desiredVersion struct {
	version int64
	has     bool
}

// desiredHead returns the desired properties of a twin document and their $version.
func desiredHead(doc []byte) (object, desiredVersion, error) {
	d, err := desiredObject(doc)
	if err != nil || !d.has("$version") {
		return d, desiredVersion{}, err
	}
	v, err := integer(d.m["$version"], join(d.path, "$version"), 0, math.MaxInt64, false)
	return d, desiredVersion{v, true}, err
}

// Ack codes of the writable-property acknowledgement (§2.4).
const (
	AckAccepted = 200
	AckRejected = 406
)

// Ack acknowledges the writable service property (§2.4).
type Ack struct {
	Code        int             // AckAccepted or AckRejected
	Version     int64           // desired $version that carried the update
	Description string          // "ad", omitted when ""
	Value       json.RawMessage // "value"; nil gives {} as the embedded SDK sends
	// Component is the PnP component whose "service" property is acknowledged ("":
	// ComponentName, deviceUpdate).
	Component string
}

// Patch renders the reported patch {"deviceUpdate":{"__t":"c","service":{"ac":…,"av":…,
// ["ad":…,]"value":…}}}.
func (a Ack) Patch() ([]byte, error) {
	var s ordered
	s.add("ac", a.Code)
	s.add("av", a.Version)
	if a.Description != "" {
		s.add("ad", a.Description)
	}
	v := a.Value
	if len(bytes.TrimSpace(v)) == 0 {
		v = json.RawMessage("{}")
	} else if !json.Valid(v) {
		return nil, fmt.Errorf("adu: ack value is not JSON")
	} else {
		var c bytes.Buffer
		_ = json.Compact(&c, v)
		v = c.Bytes()
	}
	s.raw("value", v)
	component := a.Component
	if component == "" {
		component = ComponentName
	}
	return componentPatchOf(component, "service", s.bytes())
}

// State is agent.state (§6.1).
type State int

const (
	StateIdle                 State = 0
	StateDeploymentInProgress State = 6
	StateFailed               State = 255
)

// DeviceProperty is one member of agent.deviceProperties, kept in order.
type DeviceProperty struct{ Name, Value string }

// AgentProperties is the deviceUpdate component's reported "agent" property (§2.2). Zero
// members are left out of the patch (reported patches merge).
type AgentProperties struct {
	DeviceProperties    []DeviceProperty
	CompatPropertyNames string
	State               *State
	Workflow            *Workflow
	// InstalledUpdateID is the compact JSON text UpdateID.InstalledUpdateID gives.
	InstalledUpdateID string
	LastInstallResult *InstallResult
}

// Patch renders the reported patch {"deviceUpdate":{"__t":"c","agent":{…}}} for the
// interface iface (InterfaceV1 or InterfaceV2; a model id is accepted too), which decides
// the form of the extended result codes.
func (a *AgentProperties) Patch(iface string) ([]byte, error) {
	iface, err := InterfaceOf(iface)
	if err != nil {
		return nil, err
	}
	var o ordered
	if a.DeviceProperties != nil {
		var dp ordered
		for _, p := range a.DeviceProperties {
			dp.add(p.Name, p.Value)
		}
		o.raw("deviceProperties", dp.bytes())
	}
	if a.CompatPropertyNames != "" {
		o.add("compatPropertyNames", a.CompatPropertyNames)
	}
	if a.State != nil {
		o.add("state", int(*a.State))
	}
	if a.Workflow != nil {
		o.add("workflow", a.Workflow)
	}
	if a.InstalledUpdateID != "" {
		o.add("installedUpdateId", a.InstalledUpdateID)
	}
	if a.LastInstallResult != nil {
		o.raw("lastInstallResult", a.LastInstallResult.render(iface, true))
	}
	if o.err != nil {
		return nil, o.err
	}
	return componentPatch("agent", o.bytes())
}

func componentPatch(prop string, value []byte) ([]byte, error) {
	return componentPatchOf(ComponentName, prop, value)
}

// componentPatchOf renders {"<component>":{"__t":"c","<prop>":value}}.
func componentPatchOf(component, prop string, value []byte) ([]byte, error) {
	var c ordered
	c.add("__t", "c")
	c.raw(prop, value)
	var top ordered
	top.raw(component, c.bytes())
	return top.bytes(), top.err
}

// ordered builds a JSON object with members in insertion order.
type ordered struct {
	b   bytes.Buffer
	err error
}

func (o *ordered) add(key string, v any) {
	b, err := marshalCompact(v)
	if err != nil && o.err == nil {
		o.err = err
	}
	o.raw(key, b)
}

func (o *ordered) raw(key string, v []byte) {
	if o.b.Len() == 0 {
		o.b.WriteByte('{')
	} else {
		o.b.WriteByte(',')
	}
	k, _ := marshalCompact(key)
	o.b.Write(k)
	o.b.WriteByte(':')
	o.b.Write(v)
}

func (o *ordered) bytes() []byte {
	if o.b.Len() == 0 {
		return []byte("{}")
	}
	return append(append([]byte(nil), o.b.Bytes()...), '}')
}

// StepKey is the stepResults key of the i-th manifest step: "step_0", "step_1", ….
func StepKey(i int) string { return "step_" + strconv.Itoa(i) }
