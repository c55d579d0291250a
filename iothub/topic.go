package iothub

import (
	"fmt"
	"strconv"
	"strings"
)

// Twin topic prefixes and subscription filters.
const (
	TopicTwinResponsePrefix = "$iothub/twin/res/"
	TopicTwinGetPrefix      = "$iothub/twin/GET/"
	TopicReportedPrefix     = "$iothub/twin/PATCH/properties/reported/"
	TopicDesiredPrefix      = "$iothub/twin/PATCH/properties/desired/"
	FilterTwinResponses     = "$iothub/twin/res/#"
	FilterDesired           = "$iothub/twin/PATCH/properties/desired/#"
)

// TopicKind classifies a twin topic.
type TopicKind int

// Topic kinds.
const (
	TopicUnknown       TopicKind = iota
	TopicTwinResponse            // $iothub/twin/res/{status}/?$rid=…[&$version=…]
	TopicTwinGet                 // $iothub/twin/GET/?$rid=…
	TopicReportedPatch           // $iothub/twin/PATCH/properties/reported/?$rid=…
	TopicDesiredPatch            // $iothub/twin/PATCH/properties/desired/?$version=…
)

// Topic is a parsed IoT Hub twin topic.
type Topic struct {
	Kind       TopicKind
	Status     int               // TopicTwinResponse only
	RequestID  string            // $rid, "" if absent
	Version    int64             // $version, valid if HasVersion
	HasVersion bool              //
	Properties map[string]string // all properties, raw (not URL-decoded)
}

// ParseTopic parses an IoT Hub twin topic (adu-protocol.md §1.5, §9): the
// path is split from the property bag on the first '?', the bag on '&', each
// property on its first '='. $version must be a non-negative decimal. Errors
// wrap ErrInvalidTopic.
func ParseTopic(topic string) (Topic, error) {
	path, query, hasQuery := strings.Cut(topic, "?")
	var t Topic
	switch {
	case strings.HasPrefix(path, TopicTwinResponsePrefix):
		rest := strings.TrimPrefix(path, TopicTwinResponsePrefix)
		st, tail, _ := strings.Cut(rest, "/")
		if tail != "" {
			return Topic{}, fmt.Errorf("%w: unexpected path after status in %q", ErrInvalidTopic, topic)
		}
		n, err := parseDecimal(st, 3)
		if err != nil || n < 100 || n > 999 {
			return Topic{}, fmt.Errorf("%w: bad status %q", ErrInvalidTopic, st)
		}
		t.Kind, t.Status = TopicTwinResponse, int(n)
	case path == TopicTwinGetPrefix:
		t.Kind = TopicTwinGet
	case path == TopicReportedPrefix:
		t.Kind = TopicReportedPatch
	case path == TopicDesiredPrefix:
		t.Kind = TopicDesiredPatch
	default:
		return Topic{}, fmt.Errorf("%w: %q", ErrInvalidTopic, topic)
	}
	if !hasQuery {
		if t.Kind == TopicDesiredPatch {
			return t, nil
		}
		return Topic{}, fmt.Errorf("%w: missing property bag in %q", ErrInvalidTopic, topic)
	}
	t.Properties = map[string]string{}
	for kv := range strings.SplitSeq(query, "&") {
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		if k == "" {
			return Topic{}, fmt.Errorf("%w: empty property name in %q", ErrInvalidTopic, topic)
		}
		t.Properties[k] = v
		switch k {
		case "$rid":
			t.RequestID = v
		case "$version":
			n, err := parseDecimal(v, 18)
			if err != nil {
				return Topic{}, fmt.Errorf("%w: bad $version %q", ErrInvalidTopic, v)
			}
			t.Version, t.HasVersion = n, true
		}
	}
	if t.Kind != TopicDesiredPatch && t.RequestID == "" {
		return Topic{}, fmt.Errorf("%w: missing $rid in %q", ErrInvalidTopic, topic)
	}
	return t, nil
}

// parseDecimal parses 1..maxDigits ASCII digits (no sign, no spaces).
func parseDecimal(s string, maxDigits int) (int64, error) {
	if s == "" || len(s) > maxDigits {
		return 0, strconv.ErrSyntax
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, strconv.ErrSyntax
		}
	}
	return strconv.ParseInt(s, 10, 64)
}

// String renders the topic back (property order: $rid, $version, then none of
// the others — only the properties IoT Hub itself uses are rendered).
func (t Topic) String() string {
	var path string
	switch t.Kind {
	case TopicTwinResponse:
		path = TopicTwinResponsePrefix + strconv.Itoa(t.Status) + "/"
	case TopicTwinGet:
		path = TopicTwinGetPrefix
	case TopicReportedPatch:
		path = TopicReportedPrefix
	case TopicDesiredPatch:
		path = TopicDesiredPrefix
	default:
		return ""
	}
	var q []string
	if t.RequestID != "" {
		q = append(q, "$rid="+t.RequestID)
	}
	if t.HasVersion {
		q = append(q, "$version="+strconv.FormatInt(t.Version, 10))
	}
	return path + "?" + strings.Join(q, "&")
}
