package dps

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Topics of the DPS MQTT protocol.
const (
	// TopicReplyPrefix starts every reply; FilterReplies subscribes to them.
	TopicReplyPrefix = "$dps/registrations/res/"
	FilterReplies    = "$dps/registrations/res/#"
	// TopicRegister is the register request (followed by "?$rid={rid}").
	TopicRegister = "$dps/registrations/PUT/iotdps-register/"
	// TopicOperationStatus is the operation status request (followed by
	// "?$rid={rid}&operationId={id}").
	TopicOperationStatus = "$dps/registrations/GET/iotdps-get-operationstatus/"
)

// Limits on what a reply may hold.
const (
	// MaxReply is the largest reply payload taken (a registration state is well under 2 KB;
	// an initial twin in its payload could be larger, so there is room).
	MaxReply = 16 << 10
	// MaxRetryAfter caps the retry-after a reply asks for.
	MaxRetryAfter = 5 * time.Minute
	// maxField bounds the identifiers kept from a reply (host names, ids).
	maxField = 256
)

// Operation states of a registration (RegistrationOperationStatus.status).
const (
	StatusAssigning  = "assigning"
	StatusAssigned   = "assigned"
	StatusFailed     = "failed"
	StatusDisabled   = "disabled"
	StatusUnassigned = "unassigned"
)

// Reply is a parsed DPS reply.
type Reply struct {
	// Status is the reply's status code (200 assigned or known, 202 still assigning, 4xx/5xx
	// errors; 429 throttled).
	Status int
	// RequestID is the $rid the reply answers.
	RequestID string
	// RetryAfter is how long to wait before the next request (0 if the reply does not say).
	RetryAfter time.Duration
	// OperationID and OperationStatus are the registration operation's (for 200 and 202).
	OperationID     string
	OperationStatus string
	// State is the registration state of an assigned (or failed) operation.
	State *RegistrationState
	// ErrorCode, Message and TrackingID are what an error reply (status >= 300) says.
	ErrorCode  int64
	Message    string
	TrackingID string
}

// RegistrationState is what DPS says about a device's registration.
type RegistrationState struct {
	RegistrationID string `json:"registrationId"`
	AssignedHub    string `json:"assignedHub"`
	DeviceID       string `json:"deviceId"`
	Status         string `json:"status"`
	Substatus      string `json:"substatus"`
	ErrorCode      int64  `json:"errorCode"`
	ErrorMessage   string `json:"errorMessage"`
}

// ParseReply parses a reply topic "$dps/registrations/res/{status}/?$rid={rid}[&retry-after={s}]"
// and its JSON payload. Errors wrap ErrMalformedReply and say what was wrong. An assigned
// state must name a hub (a host name) and a device id.
func ParseReply(topic string, payload []byte) (Reply, error) {
	var r Reply
	if err := r.parseTopic(topic); err != nil {
		return Reply{}, err
	}
	if len(payload) > MaxReply {
		return Reply{}, fmt.Errorf("%w: payload of %d bytes, at most %d", ErrMalformedReply, len(payload), MaxReply)
	}
	if err := r.parsePayload(payload); err != nil {
		return Reply{}, err
	}
	return r, nil
}

func (r *Reply) parseTopic(topic string) error {
	rest, ok := strings.CutPrefix(topic, TopicReplyPrefix)
	if !ok {
		return fmt.Errorf("%w: topic %.100q is not a reply", ErrMalformedReply, topic)
	}
	path, query, _ := strings.Cut(rest, "?")
	st, ok := strings.CutSuffix(path, "/")
	n, err := strconv.Atoi(st)
	if !ok || err != nil || len(st) != 3 || n < 100 {
		return fmt.Errorf("%w: bad status %.20q", ErrMalformedReply, st)
	}
	r.Status = n
	for kv := range strings.SplitSeq(query, "&") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "$rid":
			r.RequestID = v
		case "retry-after":
			s, err := strconv.ParseUint(v, 10, 32)
			if err != nil {
				return fmt.Errorf("%w: retry-after %.20q is not a number of seconds", ErrMalformedReply, v)
			}
			r.RetryAfter = min(time.Duration(s)*time.Second, MaxRetryAfter)
		}
	}
	if r.RequestID == "" || len(r.RequestID) > maxField {
		return fmt.Errorf("%w: no valid $rid in %.100q", ErrMalformedReply, topic)
	}
	return nil
}

func (r *Reply) parsePayload(payload []byte) error {
	if len(bytes.TrimSpace(payload)) == 0 {
		if r.Status < 300 {
			return fmt.Errorf("%w: status %d without a body", ErrMalformedReply, r.Status)
		}
		return nil
	}
	var body struct {
		OperationID       string             `json:"operationId"`
		Status            string             `json:"status"`
		RegistrationState *RegistrationState `json:"registrationState"`
		ErrorCode         int64              `json:"errorCode"`
		Message           string             `json:"message"`
		TrackingID        string             `json:"trackingId"`
	}
	if err := json.Unmarshal(payload, &body); err != nil {
		if r.Status >= 300 { // an error with a body that is no JSON: keep its start
			r.Message = clip(string(payload))
			return nil
		}
		return fmt.Errorf("%w: status %d: %w", ErrMalformedReply, r.Status, err)
	}
	r.OperationID, r.OperationStatus, r.State = body.OperationID, body.Status, body.RegistrationState
	r.ErrorCode, r.Message, r.TrackingID = body.ErrorCode, clip(body.Message), clip(body.TrackingID)
	if r.Status >= 300 {
		return nil
	}
	if r.OperationID == "" || len(r.OperationID) > maxField || strings.ContainsAny(r.OperationID, "&?#/ ") {
		return fmt.Errorf("%w: status %d: operationId %.50q", ErrMalformedReply, r.Status, r.OperationID)
	}
	if r.OperationStatus == StatusAssigned {
		return r.State.check()
	}
	return nil
}

// check refuses an assigned state without a usable hub and device id.
func (s *RegistrationState) check() error {
	switch {
	case s == nil:
		return fmt.Errorf("%w: assigned without a registrationState", ErrMalformedReply)
	case s.AssignedHub == "" || len(s.AssignedHub) > maxField || strings.ContainsAny(s.AssignedHub, "/ ?#@\\:\x00"):
		return fmt.Errorf("%w: assignedHub %.50q is not a host name", ErrMalformedReply, s.AssignedHub)
	case s.DeviceID == "" || len(s.DeviceID) > 128 || strings.ContainsAny(s.DeviceID, "/#+?\x00"):
		return fmt.Errorf("%w: deviceId %.50q is not a device id", ErrMalformedReply, s.DeviceID)
	}
	s.ErrorMessage = clip(s.ErrorMessage)
	return nil
}

// clip shortens a text from the service for messages.
func clip(s string) string {
	if len(s) > maxField {
		return s[:maxField] + "…"
	}
	return s
}
