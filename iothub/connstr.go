package iothub

import (
	"encoding/base64"
	"fmt"
	"strings"
)

// ConnectionString is a parsed IoT Hub device (or module) connection string:
// "HostName=…;DeviceId=…;SharedAccessKey=…[;ModuleId=…][;GatewayHostName=…]"
// or "HostName=…;DeviceId=…;x509=true".
type ConnectionString struct {
	HostName            string
	DeviceID            string
	ModuleID            string
	SharedAccessKey     string // base64, as in the string; empty with X509
	SharedAccessKeyName string // only for shared-access-policy keys (adds skn=)
	GatewayHostName     string
	X509                bool
}

// ParseConnectionString parses s. Keys are matched case-insensitively; values
// may contain '=' (base64 padding). Errors wrap ErrInvalidConnectionString and
// name the missing or invalid part.
func ParseConnectionString(s string) (ConnectionString, error) {
	var cs ConnectionString
	seen := map[string]bool{}
	for part := range strings.SplitSeq(strings.TrimSpace(s), ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return ConnectionString{}, fmt.Errorf("%w: part %q has no '='", ErrInvalidConnectionString, part)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		lk := strings.ToLower(k)
		if seen[lk] {
			return ConnectionString{}, fmt.Errorf("%w: duplicate %s", ErrInvalidConnectionString, k)
		}
		seen[lk] = true
		switch lk {
		case "hostname":
			cs.HostName = v
		case "deviceid":
			cs.DeviceID = v
		case "moduleid":
			cs.ModuleID = v
		case "sharedaccesskey":
			cs.SharedAccessKey = v
		case "sharedaccesskeyname":
			cs.SharedAccessKeyName = v
		case "gatewayhostname":
			cs.GatewayHostName = v
		case "x509":
			switch strings.ToLower(v) {
			case "true":
				cs.X509 = true
			case "false":
			default:
				return ConnectionString{}, fmt.Errorf("%w: x509=%q is not true/false", ErrInvalidConnectionString, v)
			}
		default:
			// Unknown keys (e.g. SharedAccessSignature, DeviceClientType) are ignored.
		}
	}
	if err := cs.Validate(); err != nil {
		return ConnectionString{}, err
	}
	return cs, nil
}

// Validate checks that the required parts are present and well-formed.
func (cs ConnectionString) Validate() error {
	switch {
	case cs.HostName == "":
		return fmt.Errorf("%w: missing HostName", ErrInvalidConnectionString)
	case strings.ContainsAny(cs.HostName, "/ ?#"):
		return fmt.Errorf("%w: invalid HostName %q", ErrInvalidConnectionString, cs.HostName)
	case cs.DeviceID == "":
		return fmt.Errorf("%w: missing DeviceId", ErrInvalidConnectionString)
	case len(cs.DeviceID) > 128:
		return fmt.Errorf("%w: DeviceId longer than 128 characters", ErrInvalidConnectionString)
	case cs.X509 && cs.SharedAccessKey != "":
		return fmt.Errorf("%w: both x509=true and SharedAccessKey given", ErrInvalidConnectionString)
	case !cs.X509 && cs.SharedAccessKey == "":
		return fmt.Errorf("%w: missing SharedAccessKey (or x509=true)", ErrInvalidConnectionString)
	}
	if cs.SharedAccessKey != "" {
		if _, err := base64.StdEncoding.DecodeString(cs.SharedAccessKey); err != nil {
			return fmt.Errorf("%w: SharedAccessKey is not valid base64: %w", ErrInvalidConnectionString, err)
		}
	}
	return nil
}

// ClientID is the MQTT client id: "{deviceId}" or "{deviceId}/{moduleId}".
func (cs ConnectionString) ClientID() string {
	if cs.ModuleID != "" {
		return cs.DeviceID + "/" + cs.ModuleID
	}
	return cs.DeviceID
}

// String renders the connection string without the key (safe to log).
func (cs ConnectionString) String() string {
	var b strings.Builder
	b.WriteString("HostName=" + cs.HostName + ";DeviceId=" + cs.DeviceID)
	if cs.ModuleID != "" {
		b.WriteString(";ModuleId=" + cs.ModuleID)
	}
	if cs.X509 {
		b.WriteString(";x509=true")
	} else {
		b.WriteString(";SharedAccessKey=<redacted>")
	}
	if cs.GatewayHostName != "" {
		b.WriteString(";GatewayHostName=" + cs.GatewayHostName)
	}
	return b.String()
}
