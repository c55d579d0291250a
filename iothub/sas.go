package iothub

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// DefaultAPIVersion is the api-version sent in the CONNECT username.
const DefaultAPIVersion = "2021-04-12"

const hexUpper = "0123456789ABCDEF"

// URLEncode encodes s like azure-sdk-for-c: bytes A–Z a–z 0–9 - _ . ~ are
// kept, every other byte becomes %XX with upper-case hex.
func URLEncode(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if ('A' <= c && c <= 'Z') || ('a' <= c && c <= 'z') || ('0' <= c && c <= '9') ||
			c == '-' || c == '_' || c == '.' || c == '~' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexUpper[c>>4])
		b.WriteByte(hexUpper[c&15])
	}
	return b.String()
}

// ResourceURI returns the SAS "sr" value (already URL-encoded):
// urlenc(host)%2Fdevices%2Furlenc(device)[%2Fmodules%2Furlenc(module)].
func ResourceURI(host, deviceID, moduleID string) string {
	sr := URLEncode(host) + "%2Fdevices%2F" + URLEncode(deviceID)
	if moduleID != "" {
		sr += "%2Fmodules%2F" + URLEncode(moduleID)
	}
	return sr
}

// SignSAS computes the URL-unencoded base64 signature of resourceURI and
// expiry with the base64-encoded key.
func SignSAS(keyB64, resourceURI string, expiry int64) (string, error) {
	key, err := base64.StdEncoding.DecodeString(keyB64)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalidKey, err)
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(resourceURI + "\n" + strconv.FormatInt(expiry, 10)))
	return base64.StdEncoding.EncodeToString(m.Sum(nil)), nil
}

// NewSASToken builds "SharedAccessSignature sr=…&sig=…&se=…[&skn=…]" for
// resourceURI (see ResourceURI) expiring at expiry (Unix seconds truncation).
// keyName is empty for device keys.
func NewSASToken(keyB64, resourceURI, keyName string, expiry time.Time) (string, error) {
	se := expiry.Unix()
	sig, err := SignSAS(keyB64, resourceURI, se)
	if err != nil {
		return "", err
	}
	tok := "SharedAccessSignature sr=" + resourceURI + "&sig=" + URLEncode(sig) + "&se=" + strconv.FormatInt(se, 10)
	if keyName != "" {
		tok += "&skn=" + URLEncode(keyName)
	}
	return tok, nil
}

// SASToken is a parsed SAS token. ResourceURI is kept URL-encoded as sent
// (it is signed in that form); Signature is decoded from its URL encoding.
type SASToken struct {
	ResourceURI string
	Signature   string
	Expiry      int64
	KeyName     string
}

// ParseSASToken parses "SharedAccessSignature k=v&k=v…" in any field order.
func ParseSASToken(s string) (SASToken, error) {
	rest, ok := strings.CutPrefix(s, "SharedAccessSignature ")
	if !ok {
		return SASToken{}, fmt.Errorf("%w: missing \"SharedAccessSignature \" prefix", ErrInvalidSASToken)
	}
	var t SASToken
	var haveSE bool
	for kv := range strings.SplitSeq(rest, "&") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "sr":
			t.ResourceURI = v
		case "sig":
			sig, err := url.QueryUnescape(v)
			if err != nil {
				return SASToken{}, fmt.Errorf("%w: sig: %w", ErrInvalidSASToken, err)
			}
			t.Signature = sig
		case "se":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return SASToken{}, fmt.Errorf("%w: se: %w", ErrInvalidSASToken, err)
			}
			t.Expiry, haveSE = n, true
		case "skn":
			t.KeyName = v
		}
	}
	switch {
	case t.ResourceURI == "":
		return SASToken{}, fmt.Errorf("%w: missing sr", ErrInvalidSASToken)
	case t.Signature == "":
		return SASToken{}, fmt.Errorf("%w: missing sig", ErrInvalidSASToken)
	case !haveSE:
		return SASToken{}, fmt.Errorf("%w: missing se", ErrInvalidSASToken)
	}
	return t, nil
}

// Verify checks that t is for resourceURI (compared case-insensitively after
// URL-decoding), unexpired at now, and signed with keyB64.
func (t SASToken) Verify(keyB64, resourceURI string, now time.Time) error {
	got, err1 := url.QueryUnescape(t.ResourceURI)
	want, err2 := url.QueryUnescape(resourceURI)
	if err1 != nil || err2 != nil || !strings.EqualFold(got, want) {
		return fmt.Errorf("%w: sr %q does not match %q", ErrSASSignatureMismatch, t.ResourceURI, resourceURI)
	}
	if t.Expiry <= now.Unix() {
		return fmt.Errorf("%w: se=%d, now=%d", ErrSASTokenExpired, t.Expiry, now.Unix())
	}
	sig, err := SignSAS(keyB64, t.ResourceURI, t.Expiry)
	if err != nil {
		return err
	}
	if !hmac.Equal([]byte(sig), []byte(t.Signature)) {
		return ErrSASSignatureMismatch
	}
	return nil
}

// Username builds the CONNECT username (adu-protocol.md §1.2):
// "{host}/{deviceId}[/{moduleId}]/?api-version={v}[&model-id={urlenc(modelID)}]".
func Username(host, deviceID, moduleID, apiVersion, modelID string) string {
	if apiVersion == "" {
		apiVersion = DefaultAPIVersion
	}
	u := host + "/" + deviceID + "/"
	if moduleID != "" {
		u += moduleID + "/"
	}
	u += "?api-version=" + apiVersion
	if modelID != "" {
		u += "&model-id=" + URLEncode(modelID)
	}
	return u
}
