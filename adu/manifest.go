package adu

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/aduflash/aduflash/internal/errkind"
)

// ErrUnsupportedManifestVersion: manifestVersion is not 4 or 5 (ERC 0x8030000A).
var ErrUnsupportedManifestVersion = errkind.New(errkind.Input, "unsupported manifest version")

// The manifestVersion range ParseManifest takes (its leading integer), as the Linux agent's
// SUPPORTED_UPDATE_MANIFEST_VERSION_MIN/MAX.
const (
	MinManifestVersion = 4
	MaxManifestVersion = 5
)

// ManifestVersionOf returns the manifestVersion member of a manifest as written ("" when the
// manifest is no JSON object or has none): what a refusal of an unsupported version names.
func ManifestVersionOf(manifest []byte) string {
	o, err := mustObject(manifest, "")
	if err != nil {
		return ""
	}
	if s, ok, err := o.str("manifestVersion"); err == nil && ok {
		return s
	}
	if kind(o.m["manifestVersion"]) == "a number" {
		return string(o.m["manifestVersion"])
	}
	return ""
}

// UpdateID names an update.
type UpdateID struct {
	Provider string `json:"provider"`
	Name     string `json:"name"`
	Version  string `json:"version"`
}

// InstalledUpdateID is the agent's installedUpdateId: compact JSON with the keys in the order
// provider, name, version, e.g. {"provider":"Contoso","name":"Virtual-Vacuum","version":"20.0"}.
func (u UpdateID) InstalledUpdateID() string {
	b, _ := marshalCompact(u) // a struct of strings always marshals
	return string(b)
}

func (u UpdateID) String() string { return u.Provider + "/" + u.Name + " " + u.Version }

// ParseInstalledUpdateID parses an installedUpdateId string.
func ParseInstalledUpdateID(s string) (UpdateID, error) {
	o, err := mustObject(json.RawMessage(s), "installedUpdateId")
	if err != nil {
		return UpdateID{}, err
	}
	return parseUpdateID(o)
}

func parseUpdateID(o object) (UpdateID, error) {
	var u UpdateID
	var err error
	if u.Provider, err = o.needStr("provider"); err != nil {
		return u, err
	}
	if u.Name, err = o.needStr("name"); err != nil {
		return u, err
	}
	u.Version, err = o.needStr("version")
	return u, err
}

// Step types.
const (
	StepInline    = "inline"
	StepReference = "reference"
)

// Step is one of instructions.steps (§3.3).
type Step struct {
	Type string // StepInline or StepReference
	// Inline steps.
	Handler           string
	Files             []string        // file ids into Manifest.Files
	HandlerProperties json.RawMessage // exactly as in the manifest; nil when absent
	// Reference steps: the file id of the child (detached) manifest.
	DetachedManifestFileID string
}

// File is an entry of the manifest's files map (§3.2).
type File struct {
	FileName    string
	SizeInBytes int64
	// Hashes: algorithm name as written (e.g. "sha256") → digest decoded from base64.
	Hashes          map[string][]byte
	Arguments       string
	MimeType        string
	RelatedFiles    map[string]RelatedFile // v5, keyed by related-file id
	DownloadHandler string                 // v5 downloadHandler.id, e.g. "microsoft/delta:1"
}

// RelatedFile is a v5 related file (delta source), §3.6.
type RelatedFile struct {
	FileName    string
	SizeInBytes int64
	Hashes      map[string][]byte
	Properties  map[string]string
}

// Manifest is an update manifest v4 or v5 (§3). A detached (mini) manifest has
// DetachedManifestFileID set and no Steps.
type Manifest struct {
	ManifestVersion        string // as written: "4", "5", "4.0", "5.0"
	Version                int    // 4 or 5
	UpdateID               UpdateID
	Compatibility          []map[string]string
	Steps                  []Step
	Files                  map[string]File
	DetachedManifestFileID string
	CreatedDateTime        string
}

// IsDetached tells whether m is a mini manifest pointing at the full one (§3.5).
func (m *Manifest) IsDetached() bool { return m.DetachedManifestFileID != "" }

// strongHashes are the digests an agent may rely on (≥ SHA-256), strongest first.
var strongHashes = []struct {
	name string
	size int
}{{"sha512", 64}, {"sha384", 48}, {"sha256", 32}}

// StrongestHash returns the strongest hash of at least SHA-256 strength in hashes (names
// compared case-insensitively), as agents use it (§3.4).
func StrongestHash(hashes map[string][]byte) (alg string, digest []byte, ok bool) {
	for _, h := range strongHashes {
		for name, d := range hashes {
			if strings.EqualFold(name, h.name) {
				return h.name, d, true
			}
		}
	}
	return "", nil, false
}

// ParseManifest parses an update manifest from the exact updateManifest string. It checks
// the version (4 or 5, else ErrUnsupportedManifestVersion), the update id, that every file id
// a step or detachedManifestFileId names is in files, and that every file has a decodable
// hash of at least SHA-256 strength. Unknown members are ignored. It does not verify the
// signature: call Verify first (or use VerifyManifest).
func ParseManifest(manifest []byte) (*Manifest, error) {
	o, err := mustObject(manifest, "")
	if err != nil {
		return nil, err
	}
	m := &Manifest{}
	if m.ManifestVersion, m.Version, err = manifestVersion(o); err != nil {
		return nil, err
	}
	u, err := mustObject(o.m["updateId"], "updateId")
	if err != nil {
		return nil, err
	}
	if m.UpdateID, err = parseUpdateID(u); err != nil {
		return nil, err
	}
	if m.CreatedDateTime, _, err = o.str("createdDateTime"); err != nil {
		return nil, err
	}
	if m.DetachedManifestFileID, _, err = o.str("detachedManifestFileId"); err != nil {
		return nil, err
	}
	if raw := o.m["compatibility"]; !isNull(raw) {
		var items []json.RawMessage
		if kind(raw) != "an array" || json.Unmarshal(raw, &items) != nil {
			return nil, pathErr("compatibility", "want an array, got %s", kind(raw))
		}
		for i, it := range items {
			c, ok, err := stringMap(it, index("compatibility", i), false)
			if err != nil {
				return nil, err
			}
			if !ok {
				return nil, pathErr(index("compatibility", i), "want an object, got null")
			}
			m.Compatibility = append(m.Compatibility, c)
		}
	}
	if m.Files, err = parseFiles(o); err != nil {
		return nil, err
	}
	if m.DetachedManifestFileID != "" {
		if _, ok := m.Files[m.DetachedManifestFileID]; !ok {
			return nil, pathErr("detachedManifestFileId", "file id %q is not in files", m.DetachedManifestFileID)
		}
		return m, nil
	}
	ins, err := mustObject(o.m["instructions"], "instructions")
	if err != nil {
		return nil, err
	}
	raw := ins.m["steps"]
	var steps []json.RawMessage
	if kind(raw) != "an array" || json.Unmarshal(raw, &steps) != nil {
		return nil, pathErr("instructions.steps", "want an array, got %s", kind(raw))
	}
	if len(steps) == 0 {
		return nil, pathErr("instructions.steps", "no steps")
	}
	for i, sraw := range steps {
		s, err := parseStep(sraw, index("instructions.steps", i), m.Files)
		if err != nil {
			return nil, err
		}
		m.Steps = append(m.Steps, s)
	}
	return m, nil
}

func manifestVersion(o object) (string, int, error) {
	raw := o.m["manifestVersion"]
	var s string
	switch kind(raw) {
	case "a string":
		s, _, _ = o.str("manifestVersion")
	case "a number": // never seen; tolerated
		s = string(raw)
	case "nothing", "null":
		return "", 0, fmt.Errorf("adu: manifestVersion: missing (legacy or not an update manifest): %w", ErrUnsupportedManifestVersion)
	default:
		return "", 0, pathErr("manifestVersion", "want a string, got %s", kind(raw))
	}
	// The Linux agent reads the leading integer: "4", "4.0", "5", "5.0".
	whole, frac, _ := strings.Cut(s, ".")
	n, err := strconv.Atoi(whole)
	if err != nil || strings.Trim(frac, "0") != "" || n < MinManifestVersion || n > MaxManifestVersion {
		return s, 0, fmt.Errorf("adu: manifestVersion %.20q: %w (want %d to %d)", s, ErrUnsupportedManifestVersion, MinManifestVersion, MaxManifestVersion)
	}
	return s, n, nil
}

func parseFiles(o object) (map[string]File, error) {
	fo, ok, err := o.obj("files")
	if err != nil || !ok {
		return map[string]File{}, err
	}
	files := make(map[string]File, len(fo.m))
	for _, id := range slices.Sorted(maps.Keys(fo.m)) {
		p := join("files", id)
		f, err := mustObject(fo.m[id], p)
		if err != nil {
			return nil, err
		}
		var e File
		if e.FileName, e.SizeInBytes, e.Hashes, err = fileCommon(f); err != nil {
			return nil, err
		}
		if e.Arguments, _, err = f.str("arguments"); err != nil {
			return nil, err
		}
		if e.MimeType, _, err = f.str("mimeType"); err != nil {
			return nil, err
		}
		if dh, ok, err := f.obj("downloadHandler"); err != nil {
			return nil, err
		} else if ok {
			if e.DownloadHandler, err = dh.needStr("id"); err != nil {
				return nil, err
			}
		}
		if rf, ok, err := f.obj("relatedFiles"); err != nil {
			return nil, err
		} else if ok {
			e.RelatedFiles = make(map[string]RelatedFile, len(rf.m))
			for _, rid := range slices.Sorted(maps.Keys(rf.m)) {
				r, err := mustObject(rf.m[rid], join(rf.path, rid))
				if err != nil {
					return nil, err
				}
				var x RelatedFile
				if x.FileName, x.SizeInBytes, x.Hashes, err = fileCommon(r); err != nil {
					return nil, err
				}
				if x.Properties, _, err = stringMap(r.m["properties"], join(r.path, "properties"), true); err != nil {
					return nil, err
				}
				e.RelatedFiles[rid] = x
			}
		}
		files[id] = e
	}
	return files, nil
}

func fileCommon(f object) (name string, size int64, hashes map[string][]byte, err error) {
	if name, err = f.needStr("fileName"); err != nil {
		return
	}
	if !f.has("sizeInBytes") {
		err = pathErr(join(f.path, "sizeInBytes"), "missing number")
		return
	}
	if size, err = integer(f.m["sizeInBytes"], join(f.path, "sizeInBytes"), 0, math.MaxInt64, true); err != nil {
		return
	}
	hs, ok, err := stringMap(f.m["hashes"], join(f.path, "hashes"), false)
	if err != nil {
		return
	}
	if !ok || len(hs) == 0 {
		err = pathErr(join(f.path, "hashes"), "missing")
		return
	}
	hashes = make(map[string][]byte, len(hs))
	for alg, v := range hs {
		d, derr := decodeB64(v)
		if derr != nil {
			err = pathErr(join(join(f.path, "hashes"), alg), "not base64")
			return
		}
		for _, h := range strongHashes {
			if strings.EqualFold(alg, h.name) && len(d) != h.size {
				err = pathErr(join(join(f.path, "hashes"), alg), "%d bytes, want %d", len(d), h.size)
				return
			}
		}
		hashes[alg] = d
	}
	if _, _, ok := StrongestHash(hashes); !ok {
		err = pathErr(join(f.path, "hashes"), "no sha256, sha384 or sha512")
	}
	return
}

func parseStep(raw json.RawMessage, path string, files map[string]File) (Step, error) {
	o, err := mustObject(raw, path)
	if err != nil {
		return Step{}, err
	}
	s := Step{Type: StepInline}
	if t, ok, err := o.str("type"); err != nil {
		return s, err
	} else if ok {
		s.Type = t
	}
	switch s.Type {
	case StepReference:
		if s.DetachedManifestFileID, err = o.needStr("detachedManifestFileId"); err != nil {
			return s, err
		}
		if _, ok := files[s.DetachedManifestFileID]; !ok {
			return s, pathErr(join(path, "detachedManifestFileId"), "file id %q is not in files", s.DetachedManifestFileID)
		}
	case StepInline:
		if s.Handler, err = o.needStr("handler"); err != nil {
			return s, err
		}
		if hp := o.m["handlerProperties"]; !isNull(hp) {
			if kind(hp) != "an object" {
				return s, pathErr(join(path, "handlerProperties"), "want an object, got %s", kind(hp))
			}
			s.HandlerProperties = append(json.RawMessage(nil), hp...)
		}
		if fr := o.m["files"]; !isNull(fr) {
			if kind(fr) != "an array" || json.Unmarshal(fr, &s.Files) != nil {
				return s, pathErr(join(path, "files"), "want an array of file ids")
			}
			for i, id := range s.Files {
				if _, ok := files[id]; !ok {
					return s, pathErr(index(join(path, "files"), i), "file id %q is not in files", id)
				}
			}
		}
	default:
		return s, pathErr(join(path, "type"), "unknown step type %.40q", s.Type)
	}
	return s, nil
}

// ParseDetachedManifestFile returns the manifest text of a downloaded detached or child
// manifest file, {"updateManifest":"<manifest JSON>"} (§3.5). Its integrity comes from the
// parent manifest's file hash, which the caller checks on the file bytes first.
func ParseDetachedManifestFile(data []byte) ([]byte, error) {
	o, err := mustObject(data, "")
	if err != nil {
		return nil, err
	}
	s, err := o.needStr("updateManifest")
	if err != nil {
		return nil, err
	}
	return []byte(s), nil
}
