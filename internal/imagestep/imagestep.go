// Package imagestep checks the steps of an import manifest that aduagent runs with its
// handler aduflash/image:1 against the images they install, on the build host (aduimport
// manifest create) and at import (the local hub), so that what the device would refuse is
// refused before it is deployed.
//
// The rules are aduagent's (agent/deploy.go: plan and checkImage; docs/agent.md), applied
// to what the image headers say:
//
//   - compatibility: every property an aduimg image is signed for must have that value in
//     each compatibility set of the manifest that names the property (devices that match
//     the set would refuse the image with 32000003);
//   - slotClass: a step's handlerProperties.slotClass must be the slot class the aduimg
//     image is signed for (32000004), and no two steps may write the same class;
//   - installedCriteria: aduagent records a step's installedCriteria as what its slot holds
//     and reports a later update whose steps carry the same values as already installed, so
//     every step needs one, and for an aduimg or MCUboot image it must be the image's
//     version (for MCUboot the version as imgtool writes it, 1.2.3+4; 1.2.3 means 1.2.3+0).
//
// Complete first fills in what a step leaves out and its images say: installedCriteria (the
// version) and slotClass (an aduimg image's class). NameAdaptive, before the manifest is
// built, gives a related file that is an adaptive index or chunk store its property
// aduflash.adaptive and its file the download handler aduflash/adaptive:1. Headers are read but not verified: the
// signature is the device's to check, and a forged header only earns a refusal there.
//
// The package sits between manifestgen (which imports only the standard library) and the
// image formats, so that aduimport and the hub share one implementation.
package imagestep

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/image/adaptive"
	"github.com/aduflash/aduflash/image/mcuboot"
	"github.com/aduflash/aduflash/manifestgen"
)

// Handler is the step handler aduagent runs: one aduimg or MCUboot image into the spare
// slot of a class (agent.HandlerImage).
const Handler = "aduflash/image:1"

// Image formats of facts.Format.
const (
	formatAduimg  = "aduimg"
	formatMCUboot = "mcuboot"
)

// facts is what one payload file says about itself.
type facts struct {
	Format        string // formatAduimg, formatMCUboot, or "" for a file that is neither
	Version       string
	SlotClass     string
	Compatibility map[string]string
	Problem       string // why an image's header does not parse (Version, SlotClass, Compatibility empty)
}

// Check returns a *manifestgen.ValidationError (errors.Is manifestgen.ErrInvalid) listing
// every aduflash/image:1 step of m that disagrees with its images, or an error reading an
// image. path maps a file name of the manifest to the file to read.
func Check(m *manifestgen.Manifest, path func(filename string) string) error {
	imgs, err := readImages(m, path)
	if err != nil {
		return err
	}
	return verdict(violations(m, imgs))
}

// Complete fills in the installedCriteria and slotClass that the aduflash/image:1 steps of m
// leave out and their images give, then checks m as Check does.
func Complete(m *manifestgen.Manifest, path func(filename string) string) error {
	imgs, err := readImages(m, path)
	if err != nil {
		return err
	}
	fillDefaults(m, imgs)
	return verdict(violations(m, imgs))
}

// verdict wraps violations in an error.
func verdict(vs []manifestgen.Violation) error {
	if len(vs) > 0 {
		return &manifestgen.ValidationError{Violations: vs}
	}
	return nil
}

// isImageStep reports whether aduagent runs st with its image handler.
func isImageStep(st manifestgen.Step) bool {
	return !st.IsReference() && strings.EqualFold(st.Handler, Handler)
}

// readImages reads the facts of every file an aduflash/image:1 step installs.
func readImages(m *manifestgen.Manifest, path func(string) string) (map[string]facts, error) {
	imgs := map[string]facts{}
	for _, st := range m.Instructions.Steps {
		if !isImageStep(st) {
			continue
		}
		for _, name := range st.Files {
			if _, ok := imgs[name]; ok {
				continue
			}
			f, err := readFacts(path(name))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			imgs[name] = f
		}
	}
	return imgs, nil
}

// readFacts reads the header of the file at p the way aduagent tells the formats apart: by
// their magic, anything else being a raw file.
func readFacts(p string) (facts, error) {
	f, err := os.Open(p)
	if err != nil {
		return facts{}, err
	}
	defer f.Close()
	br := bufio.NewReader(f)
	prefix, err := br.Peek(16)
	if err != nil && err != io.EOF {
		return facts{}, err
	}
	switch {
	case image.IsImage(prefix):
		h, err := image.ParseHeader(br)
		if err != nil {
			if !image.Rejected(err) {
				return facts{}, err
			}
			return facts{Format: formatAduimg, Problem: err.Error()}, nil
		}
		return facts{Format: formatAduimg, Version: h.Version, SlotClass: h.SlotClass, Compatibility: h.Compatibility}, nil
	case mcuboot.IsImage(prefix):
		data, err := io.ReadAll(io.LimitReader(br, mcuboot.MaxSize+1))
		if err != nil {
			return facts{}, err
		}
		img, err := mcuboot.Parse(data)
		if err != nil {
			return facts{Format: formatMCUboot, Problem: err.Error()}, nil
		}
		return facts{Format: formatMCUboot, Version: img.Header.Version.String()}, nil
	}
	return facts{}, nil
}

// stepProps are the handlerProperties aduagent reads.
type stepProps struct {
	criteria, class       string
	hasCriteria, hasClass bool
}

// props reads installedCriteria and slotClass; a member that is no string is a violation at.
func props(st manifestgen.Step, at string) (stepProps, []manifestgen.Violation) {
	var p stepProps
	var vs []manifestgen.Violation
	for _, m := range []struct {
		name string
		to   *string
		has  *bool
	}{{"installedCriteria", &p.criteria, &p.hasCriteria}, {"slotClass", &p.class, &p.hasClass}} {
		raw, ok := st.HandlerProperties.Get(m.name)
		if !ok || string(raw) == "null" {
			continue
		}
		if err := json.Unmarshal(raw, m.to); err != nil {
			vs = append(vs, manifestgen.Violation{Path: at + "." + m.name, Message: fmt.Sprintf("%s reads it as a string, got %s", Handler, raw)})
			continue
		}
		*m.has = true
	}
	return p, vs
}

// common returns the value get gives for every image of st, or "" if they differ, one is
// no image or one has none.
func common(st manifestgen.Step, imgs map[string]facts, get func(facts) string) string {
	v := ""
	for i, name := range st.Files {
		f := imgs[name]
		if f.Format == "" || f.Problem != "" || get(f) == "" || (i > 0 && get(f) != v) {
			return ""
		}
		v = get(f)
	}
	return v
}

// fillDefaults sets installedCriteria to the images' version and slotClass to their class
// where a step has none.
func fillDefaults(m *manifestgen.Manifest, imgs map[string]facts) {
	for i, st := range m.Instructions.Steps {
		if !isImageStep(st) {
			continue
		}
		p, _ := props(st, "")
		set := func(name, v string) {
			b, _ := json.Marshal(v) // a string always encodes
			st.HandlerProperties = st.HandlerProperties.With(name, b)
		}
		if v := common(st, imgs, func(f facts) string { return f.Version }); !p.hasCriteria && v != "" {
			set("installedCriteria", v)
		}
		if c := common(st, imgs, func(f facts) string { return f.SlotClass }); !p.hasClass && c != "" {
			set("slotClass", c)
		}
		m.Instructions.Steps[i] = st
	}
}

// NameAdaptive gives the related files of spec that are an adaptive index or chunk store (by
// their magic) the related-file property that tells them apart, where they have none, and
// their file the download handler aduflash/adaptive:1, where it has none.
func NameAdaptive(spec *manifestgen.Spec) error {
	for i := range spec.Files {
		f := &spec.Files[i]
		for j := range f.Related {
			r := &f.Related[j]
			role, err := adaptiveRole(r.Path)
			if err != nil {
				return err
			}
			if role == "" {
				continue
			}
			if _, set := r.Properties.Get(adaptive.RoleProperty); !set {
				b, _ := json.Marshal(role) // a string always encodes
				r.Properties = r.Properties.With(adaptive.RoleProperty, b)
			}
			if f.DownloadHandler == "" {
				f.DownloadHandler = AdaptiveHandler
			}
		}
	}
	return nil
}

// AdaptiveHandler is the download handler of an image with an adaptive index
// (agent.DownloadHandlerAdaptive).
const AdaptiveHandler = "aduflash/adaptive:1"

// adaptiveRole tells whether the file at p is an adaptive index or chunk store ("": neither).
func adaptiveRole(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	head := make([]byte, len(adaptive.IndexMagic))
	n, _ := io.ReadFull(f, head)
	switch head = head[:n]; {
	case adaptive.IsIndex(head):
		return adaptive.RoleIndex, nil
	case adaptive.IsStore(head):
		return adaptive.RoleStore, nil
	}
	return "", nil
}

// violations applies the rules of the package comment, in document order: compatibility,
// the steps, then the images that do not parse.
func violations(m *manifestgen.Manifest, imgs map[string]facts) []manifestgen.Violation {
	var vs []manifestgen.Violation
	for _, name := range imageFiles(m) {
		vs = append(vs, compatViolations(m.Compatibility, name, imgs[name])...)
	}
	classes := map[string]int{} // slot class → the step (1-based) that writes it
	for i, st := range m.Instructions.Steps {
		if !isImageStep(st) {
			continue
		}
		at := fmt.Sprintf("$.instructions.steps[%d].handlerProperties", i)
		p, bad := props(st, at)
		vs = append(vs, bad...)
		vs = append(vs, criteriaViolations(st, p, at, imgs)...)
		class := p.class
		for _, name := range st.Files {
			f := imgs[name]
			switch {
			case f.SlotClass == "":
			case class == "":
				class = f.SlotClass
			case class != f.SlotClass:
				vs = append(vs, manifestgen.Violation{Path: at + ".slotClass", Message: fmt.Sprintf(
					"is %q, but %s is signed for slot class %s: aduagent refuses it (32000004)", class, name, f.SlotClass)})
			}
		}
		if class == "" {
			continue
		}
		if first, dup := classes[class]; dup {
			vs = append(vs, manifestgen.Violation{Path: at, Message: fmt.Sprintf(
				"writes slot class %s, which step %d writes already: aduagent writes one image per slot class", class, first)})
			continue
		}
		classes[class] = i + 1
	}
	for k, f := range m.Files {
		if p := imgs[f.Filename].Problem; p != "" {
			vs = append(vs, manifestgen.Violation{Path: fmt.Sprintf("$.files[%d].filename", k), Message: fmt.Sprintf(
				"%s: %s: aduagent refuses it", f.Filename, p)})
		}
	}
	return vs
}

// imageFiles lists the files of the image steps, each once, in step order.
func imageFiles(m *manifestgen.Manifest) []string {
	var out []string
	seen := map[string]bool{}
	for _, st := range m.Instructions.Steps {
		if !isImageStep(st) {
			continue
		}
		for _, name := range st.Files {
			if !seen[name] {
				seen[name] = true
				out = append(out, name)
			}
		}
	}
	return out
}

// compatViolations reports each compatibility set that gives a property another value than
// the image is signed for. A property the set does not name cannot be checked here.
func compatViolations(sets []manifestgen.Compatibility, name string, f facts) []manifestgen.Violation {
	keys := slices.Sorted(maps.Keys(f.Compatibility))
	var vs []manifestgen.Violation
	for j, set := range sets {
		for _, p := range set {
			for _, k := range keys {
				if strings.EqualFold(p.Name, k) && !strings.EqualFold(p.Value, f.Compatibility[k]) {
					vs = append(vs, manifestgen.Violation{Path: fmt.Sprintf("$.compatibility[%d]", j), Message: fmt.Sprintf(
						"%s=%s, but %s is signed for %s=%s: aduagent on these devices refuses it (32000003)", p.Name, p.Value, name, k, f.Compatibility[k])})
				}
			}
		}
	}
	return vs
}

// criteriaViolations checks that a step has installedCriteria and that it is the version of
// each of its images.
func criteriaViolations(st manifestgen.Step, p stepProps, at string, imgs map[string]facts) []manifestgen.Violation {
	if !p.hasCriteria {
		use := "the step's files give no single aduimg or MCUboot version to use"
		if v := common(st, imgs, func(f facts) string { return f.Version }); v != "" {
			use = fmt.Sprintf("use the image's version %q", v)
		}
		return []manifestgen.Violation{{Path: at, Message: fmt.Sprintf(
			"%s needs installedCriteria, or aduagent installs the update again at every deployment (%s)", Handler, use)}}
	}
	var vs []manifestgen.Violation
	for _, name := range st.Files {
		f := imgs[name]
		if f.Version == "" || sameVersion(f, p.criteria) {
			continue
		}
		vs = append(vs, manifestgen.Violation{Path: at + ".installedCriteria", Message: fmt.Sprintf(
			"is %q, but %s is version %s: aduagent records installedCriteria as what the slot holds and skips a later update with the same value (use %q, or leave it out)",
			p.criteria, name, f.Version, f.Version)})
	}
	return vs
}

// sameVersion reports whether criteria names the version of image f: the same string, or for
// MCUboot the same version (1.2.3 is 1.2.3+0).
func sameVersion(f facts, criteria string) bool {
	if criteria == f.Version {
		return true
	}
	if f.Format != formatMCUboot {
		return false
	}
	a, err1 := mcuboot.ParseVersion(criteria)
	b, err2 := mcuboot.ParseVersion(f.Version)
	return err1 == nil && err2 == nil && a == b
}
