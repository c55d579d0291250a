package hub

import (
	"github.com/aduflash/aduflash/adu"
	"github.com/aduflash/aduflash/manifestgen"
)

// updateManifest is the update manifest v5 as the service writes it (compact): its members,
// and those of its parts, in the order of the real service's manifests
// (adu/testdata/manifest_v4.json).
type updateManifest struct {
	ManifestVersion string                      `json:"manifestVersion"`
	UpdateID        adu.UpdateID                `json:"updateId"`
	Compatibility   []manifestgen.Compatibility `json:"compatibility"`
	Instructions    struct {
		Steps []any `json:"steps"` // inlineStep or referenceStep
	} `json:"instructions"`
	// Files maps file ids to manifestFile values, in the order of Update.Files (a JSON map
	// would sort the random ids).
	Files           manifestgen.Object `json:"files"`
	CreatedDateTime string             `json:"createdDateTime"`
}

// createdFormat is the service's createdDateTime: UTC, up to 7 fractional digits.
const createdFormat = "2006-01-02T15:04:05.9999999Z"

type inlineStep struct {
	Handler string   `json:"handler"`
	Files   []string `json:"files"` // file ids
	// HandlerProperties is the import manifest's, members in their order (nil: none).
	HandlerProperties *manifestgen.Object `json:"handlerProperties,omitempty"`
}

type referenceStep struct {
	Type                   string `json:"type"` // manifestgen.StepReference
	DetachedManifestFileID string `json:"detachedManifestFileId"`
}

type manifestFile struct {
	FileName    string            `json:"fileName"`
	SizeInBytes int64             `json:"sizeInBytes"`
	Hashes      map[string]string `json:"hashes"`
	// Properties are a related file's, from the import manifest.
	Properties *manifestgen.Object `json:"properties,omitempty"`
	// RelatedFiles maps a payload's related files' ids to manifestFile values, in order.
	RelatedFiles    manifestgen.Object           `json:"relatedFiles,omitempty"`
	DownloadHandler *manifestgen.DownloadHandler `json:"downloadHandler,omitempty"`
}

// detachedManifestFile is the file the service serves for a reference step.
type detachedManifestFile struct {
	UpdateManifest string `json:"updateManifest"`
}

// updateManifestOf writes u's update manifest: m's compatibility and steps with u's file ids
// (ids: payload file name → id; detached: reference step index → id of its detached
// manifest file) and u's files.
func updateManifestOf(m *manifestgen.Manifest, u *Update, ids map[string]string, detached map[int]string) ([]byte, error) {
	files, err := manifestFiles(m, u.Files)
	if err != nil {
		return nil, err
	}
	um := updateManifest{ManifestVersion: UpdateManifestVersion, UpdateID: u.UpdateID, Compatibility: m.Compatibility,
		Files: files, CreatedDateTime: u.ImportedAt.Format(createdFormat)}
	for i, st := range m.Instructions.Steps {
		if st.IsReference() {
			um.Instructions.Steps = append(um.Instructions.Steps, referenceStep{Type: manifestgen.StepReference, DetachedManifestFileID: detached[i]})
			continue
		}
		s := inlineStep{Handler: st.Handler, Files: make([]string, len(st.Files)), HandlerProperties: present(st.HandlerProperties)}
		for j, name := range st.Files {
			s.Files[j] = ids[name]
		}
		um.Instructions.Steps = append(um.Instructions.Steps, s)
	}
	return marshal(um)
}

// manifestFiles is the update manifest's files map: every file of files but the related
// ones, which go into their payload's relatedFiles.
func manifestFiles(m *manifestgen.Manifest, files []UpdateFile) (manifestgen.Object, error) {
	var out manifestgen.Object
	for _, f := range files {
		if f.Kind == FileRelated {
			continue
		}
		mf := manifestFile{FileName: f.FileName, SizeInBytes: f.SizeInBytes, Hashes: f.Hashes}
		if f.Kind == FilePayload {
			imf := importFileNamed(m, f.FileName)
			var err error
			if mf.RelatedFiles, err = relatedFiles(imf, files, f.ID); err != nil {
				return nil, err
			}
			mf.DownloadHandler = imf.DownloadHandler
		}
		b, err := marshal(mf)
		if err != nil {
			return nil, err
		}
		out = append(out, manifestgen.Member{Name: f.ID, Value: b})
	}
	return out, nil
}

// relatedFiles is the relatedFiles map of the payload with id parent: its related files in
// files, staged in the order of the import manifest's imf.RelatedFiles (whose names need not
// be unique), with their properties.
func relatedFiles(imf *manifestgen.File, files []UpdateFile, parent string) (manifestgen.Object, error) {
	var out manifestgen.Object
	related := imf.RelatedFiles
	for _, f := range files {
		if f.Kind != FileRelated || f.Parent != parent || len(related) == 0 {
			continue
		}
		props := related[0].Properties
		related = related[1:]
		b, err := marshal(manifestFile{FileName: f.FileName, SizeInBytes: f.SizeInBytes, Hashes: f.Hashes, Properties: present(props)})
		if err != nil {
			return nil, err
		}
		out = append(out, manifestgen.Member{Name: f.ID, Value: b})
	}
	return out, nil
}

// importFileNamed returns the import manifest's file named name (a payload of the update).
func importFileNamed(m *manifestgen.Manifest, name string) *manifestgen.File {
	for i := range m.Files {
		if m.Files[i].Filename == name {
			return &m.Files[i]
		}
	}
	return &manifestgen.File{}
}

// present is o, or nil when the import manifest had no such member.
func present(o manifestgen.Object) *manifestgen.Object {
	if o == nil {
		return nil
	}
	return &o
}
