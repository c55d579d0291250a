package adu

// DiagnosticsComponent is the PnP component of remote log collection
// (dtmi:azure:iot:diagnosticInformation;1), part of the deviceUpdateModel ;2 and ;3 models.
// The service writes a request into its writable "service" property; the agent acknowledges
// it, uploads its logs and reports the outcome in its "agent" property, as the Linux agent
// does (src/diagnostics_component).
const DiagnosticsComponent = "diagnosticInformation"

// DiagnosticsRequest is diagnosticInformation.service: upload the device's logs for the
// operation into the Blob Storage container the SAS URL names.
type DiagnosticsRequest struct {
	OperationID   string // "operationId"
	StorageSASURL string // "storageSasUrl": https://ACCOUNT.blob.core.windows.net/CONTAINER?<SAS token>
}

// DiagnosticsDesired is what a twin document says about the diagnosticInformation component.
type DiagnosticsDesired struct {
	Version    int64 // the desired $version: the ack's "av"
	HasVersion bool
	Request    *DiagnosticsRequest // nil: the document holds no diagnosticInformation.service
}

// ParseDiagnosticsDesired parses the diagnosticInformation part of a twin document in any form
// ParseDesired takes. A member missing or null reads as ""; one of another type is an error
// naming its path. The values are not checked: they come from the service (or from whoever
// can write the twin) and the agent refuses what it cannot use.
func ParseDiagnosticsDesired(doc []byte) (*DiagnosticsDesired, error) {
	raw, path, v, err := desiredService(doc, DiagnosticsComponent)
	if err != nil {
		return nil, err
	}
	out := &DiagnosticsDesired{Version: v.version, HasVersion: v.has}
	if raw == nil {
		return out, nil
	}
	svc, err := mustObject(raw, path)
	if err != nil {
		return nil, err
	}
	r := &DiagnosticsRequest{}
	if r.OperationID, _, err = svc.str("operationId"); err != nil {
		return nil, err
	}
	if r.StorageSASURL, _, err = svc.str("storageSasUrl"); err != nil {
		return nil, err
	}
	out.Request = r
	return out, nil
}

// DiagnosticsResult is diagnosticInformation.agent.resultCode: the Linux agent's
// Diagnostics_Result.
type DiagnosticsResult int

const (
	DiagnosticsSuccess         DiagnosticsResult = 200 // every log uploaded
	DiagnosticsFailure         DiagnosticsResult = 0   // failed otherwise
	DiagnosticsNoLogsFound     DiagnosticsResult = -1  // none of the configured logs exists
	DiagnosticsUploadFailed    DiagnosticsResult = -2  // an upload failed (refused, unreachable)
	DiagnosticsBadCredential   DiagnosticsResult = -4  // storageSasUrl is no usable SAS URL
	DiagnosticsNoComponents    DiagnosticsResult = -5  // the device is configured to collect nothing
	DiagnosticsNoOperationID   DiagnosticsResult = -6  // the request has no (usable) operationId
	DiagnosticsNoSASCredential DiagnosticsResult = -7  // the request has no storageSasUrl
)

// DiagnosticsReport renders the agent's report of an operation:
// {"diagnosticInformation":{"__t":"c","agent":{"resultCode":200,"operationId":"…"}}}.
func DiagnosticsReport(result DiagnosticsResult, operationID string) ([]byte, error) {
	var o ordered
	o.add("resultCode", int(result))
	o.add("operationId", operationID)
	if o.err != nil {
		return nil, o.err
	}
	return componentPatchOf(DiagnosticsComponent, "agent", o.bytes())
}
