package adu

import (
	"bytes"
	"errors"
	"testing"
)

// Seeds live in testdata/fuzz/<Name>/ (from the real capture); f.Add adds a few more.

// refused tells whether a twin parser refused doc, failing on an error that is not
// ErrMalformed.
func refused(t *testing.T, err error) bool {
	if err != nil && !errors.Is(err, ErrMalformed) {
		t.Fatalf("error not ErrMalformed: %v", err)
	}
	return err != nil
}

func FuzzParseServiceProperties(f *testing.F) {
	f.Add([]byte(`{"deviceUpdate":{"service":{"workflow":{"action":255,"id":"nodeployment"},"updateManifest":null},"__t":"c"},"$version":6}`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		d, err := ParseDesired(doc)
		if refused(t, err) {
			return
		}
		if d.Service != nil {
			// The service object parses on its own the same way.
			s, err := ParseServiceProperties(d.Service.Raw)
			if err != nil || s.UpdateManifest != d.Service.UpdateManifest || len(s.FileURLs) != len(d.Service.FileURLs) {
				t.Fatalf("re-parse of service: %v", err)
			}
			if _, err := (Ack{Code: AckAccepted, Version: d.Version, Value: d.Service.Raw}).Patch(); err != nil {
				t.Fatalf("ack: %v", err)
			}
		}
	})
}

func FuzzParseManifest(f *testing.F) {
	f.Add([]byte(v5Example))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseManifest(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupportedManifestVersion) {
				t.Fatalf("error of no known kind: %v", err)
			}
			return
		}
		if m.Version != 4 && m.Version != 5 {
			t.Fatalf("version %d", m.Version)
		}
		if _, err := ParseInstalledUpdateID(m.UpdateID.InstalledUpdateID()); err != nil {
			t.Fatalf("installedUpdateId round trip: %v", err)
		}
		for _, s := range m.Steps {
			for _, id := range s.Files {
				if _, ok := m.Files[id]; !ok {
					t.Fatalf("dangling file id %q", id)
				}
			}
		}
	})
}

// FuzzVerify mutates the manifest and the signature of the real capture: nothing but the
// exact pair verifies, and every failure is a *VerifyError with a sentinel.
func FuzzVerify(f *testing.F) {
	m, jws := realCapture(f)
	f.Fuzz(func(t *testing.T, manifest []byte, sig string) {
		v, err := Verify(manifest, sig, VerifyOptions{})
		if err == nil {
			if !bytes.Equal(manifest, m) || sig != jws || v.RootKID != "ADU.200702.R" {
				t.Fatalf("verified a changed pair")
			}
			return
		}
		var ve *VerifyError
		if !errors.As(err, &ve) || ve.ExtendedResultCode() == 0 {
			t.Fatalf("not a VerifyError: %v", err)
		}
	})
}

func FuzzParseDiagnosticsDesired(f *testing.F) {
	f.Add([]byte(`{"diagnosticInformation":{"__t":"c","service":{"operationId":"op-1","storageSasUrl":"https://a.blob.core.windows.net/logs?sv=2021-08-06&sig=x"}},"$version":4}`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		d, err := ParseDiagnosticsDesired(doc)
		if refused(t, err) {
			return
		}
		if d.Request != nil {
			if _, err := DiagnosticsReport(DiagnosticsSuccess, d.Request.OperationID); err != nil {
				t.Fatalf("report: %v", err)
			}
		}
	})
}
