package iothub

import (
	"fmt"

	"github.com/aduflash/aduflash/internal/errkind"
)

// Sentinel errors. Returned errors wrap these; test with errors.Is.
var (
	// ErrInvalidConnectionString reports a malformed or incomplete connection string.
	ErrInvalidConnectionString = errkind.New(errkind.Input, "iothub: invalid connection string")
	// ErrInvalidConfig reports an unusable Config.
	ErrInvalidConfig = errkind.New(errkind.Input, "iothub: invalid config")
	// ErrInvalidKey reports a shared access key that is not valid base64.
	ErrInvalidKey = errkind.New(errkind.Input, "iothub: invalid shared access key")
	// ErrInvalidSASToken reports a SAS token that cannot be parsed.
	ErrInvalidSASToken = errkind.New(errkind.Input, "iothub: invalid SAS token")
	// ErrSASTokenExpired reports a SAS token whose expiry is not in the future.
	ErrSASTokenExpired = errkind.New(errkind.Input, "iothub: SAS token expired")
	// ErrSASSignatureMismatch reports a SAS token signed with another key or resource.
	ErrSASSignatureMismatch = errkind.New(errkind.Input, "iothub: SAS token signature mismatch")
	// ErrInvalidTopic reports an MQTT topic that is not a recognised IoT Hub twin topic.
	ErrInvalidTopic = errkind.New(errkind.Input, "iothub: invalid topic")
	// ErrConnect reports a failed MQTT connection attempt (refused or network error).
	ErrConnect = errkind.New(errkind.Environment, "iothub: connect failed")
	// ErrUnauthorized is wrapped with ErrConnect when IoT Hub refused the CONNECT's
	// credentials (CONNACK "not authorized" or "bad user name or password"): an unknown or
	// deleted device, a wrong key or certificate.
	ErrUnauthorized = errkind.New(errkind.Environment, "iothub: not authorized")
	// ErrNotConnected reports a request made while the client is disconnected.
	ErrNotConnected = errkind.New(errkind.Environment, "iothub: not connected")
	// ErrClosed reports use of a closed Client.
	ErrClosed = errkind.New(errkind.Environment, "iothub: client closed")
	// ErrTimeout reports a twin request that got no response in time.
	ErrTimeout = errkind.New(errkind.Environment, "iothub: request timed out")
	// ErrStatus is wrapped by every *StatusError.
	ErrStatus = errkind.New(errkind.Environment, "iothub: error status")
	// ErrMalformedResponse reports a twin response that cannot be decoded.
	ErrMalformedResponse = errkind.New(errkind.Environment, "iothub: malformed response")
)

// StatusError is a twin request answered by IoT Hub with a status >= 400.
type StatusError struct {
	Op     string // "twin GET" or "reported PATCH"
	Status int
	Body   string // response payload, if any (truncated to 256 bytes)
}

func (e *StatusError) Error() string {
	if e.Body != "" {
		return fmt.Sprintf("iothub: %s: status %d: %s", e.Op, e.Status, e.Body)
	}
	return fmt.Sprintf("iothub: %s: status %d", e.Op, e.Status)
}

// Unwrap makes errors.Is(err, ErrStatus) true.
func (e *StatusError) Unwrap() error { return ErrStatus }

// Retriable reports whether IoT Hub's SDK rule considers the status
// retriable (429 or >= 500).
func (e *StatusError) Retriable() bool { return e.Status == 429 || e.Status >= 500 }
