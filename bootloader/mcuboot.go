package bootloader

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/aduflash/aduflash/bootloader/mcuboottrailer"
	"github.com/aduflash/aduflash/image/mcuboot"
)

// UpgradeMode is how MCUboot is asked to take the image in the secondary slot.
type UpgradeMode string

// Upgrade modes.
const (
	// UpgradeTest requests a test swap: the new image must confirm itself (image_ok in the
	// primary trailer) or MCUboot swaps the old image back at the following reset.
	UpgradeTest UpgradeMode = "test"
	// UpgradePermanent requests a permanent swap: the new image is confirmed by MCUboot itself
	// and there is no revert.
	UpgradePermanent UpgradeMode = "permanent"
)

// ParseUpgradeMode parses "test" or "permanent" ("" means test).
func ParseUpgradeMode(s string) (UpgradeMode, error) {
	switch m := UpgradeMode(s); m {
	case UpgradeTest, UpgradePermanent:
		return m, nil
	case "":
		return UpgradeTest, nil
	}
	return "", fmt.Errorf("unknown MCUboot upgrade mode %q (want test or permanent)", s)
}

// MCUbootConfig configures the MCUboot backend.
type MCUbootConfig struct {
	// Primary and Secondary are MCUboot's two image slots of one image (e.g. two MTD
	// partitions of an MCU's SPI NOR). Their MaxAlign and ErasedZero must agree.
	// Secondary.ImageEnd, when not 0, says where the image written into the secondary slot
	// ends; when 0 it is taken from the MCUboot image header found in the slot (header +
	// body + TLV areas). It decides whether the secondary trailer may be erased (see
	// MarkPending and MarkBad).
	Primary, Secondary mcuboottrailer.Slot
	// PrimaryName and SecondaryName are the bank names of the two slots; default "primary"
	// and "secondary".
	PrimaryName, SecondaryName Bank
	// Mode is the upgrade MarkPending requests; default UpgradeTest.
	Mode UpgradeMode
}

// MCUboot is the state model over MCUboot's image trailers (swap upgrade strategies:
// swap-using-move, swap-using-scratch, swap-using-offset; not overwrite-only or direct-xip).
//
// MCUboot always runs the image in the primary slot. An update is written into the
// secondary slot and requested in the secondary trailer; at the next reset MCUboot swaps
// the two images (the new one into primary, the old one into secondary). After a test swap
// the new image must confirm itself (image_ok in the primary trailer), otherwise the reset
// after that swaps them back (revert). The banks of the state model are therefore the two
// slot positions, not the images: after a swap "secondary" holds the old image.
//
// The mapping, with the swap type MCUboot would choose at the next reset
// (mcuboottrailer.Decide, bootutil's boot_swap_tables):
//
//   - none, nothing requested: Primary = primary; nothing pending. If the last swap MCUboot
//     made was a revert (primary trailer: swap_info revert, copy_done and image_ok set),
//     Bad = [secondary]: it holds the image that did not confirm itself.
//   - test requested (secondary magic good, image_ok unset): Primary = Pending = secondary,
//     AttemptsLeft = 1 (it has not booted yet), Fallback = primary.
//   - permanent requested (secondary magic good, image_ok set): Primary = Pending =
//     secondary, AttemptsLeft = 1, no Fallback (MCUboot never reverts a permanent swap). It
//     is reported as pending, not as primary, so that nothing takes secondary for the bank
//     that runs before the reset has happened.
//   - revert (after a test swap, unconfirmed: primary magic good, image_ok unset, copy_done
//     set): the new image runs from primary on trial: Primary = Pending = primary,
//     AttemptsLeft = 0 (the next reset reverts), Fallback = secondary.
//
// A primary trailer whose magic is good, copy_done unset and swap_info names a swap is left
// over from a swap that was interrupted (MCUboot resumes it from its swap-status records,
// which this package does not read); State reports ErrBadState for it.
//
// The operations, each one trailer transaction (mcuboottrailer's ordered unit writes):
//
//   - MarkPending(secondary): request the configured upgrade (boot_set_pending). Refused
//     for primary (ErrPrimaryBank) and for secondary during a trial, since it then holds the
//     image MCUboot reverts to (ErrPrimaryBank). A test request writes magic then swap_info;
//     a permanent one writes image_ok first, then magic, then swap_info, so that no power cut
//     can leave a test request behind (bootutil writes the magic first). Units that already
//     hold the wanted value are skipped, so a request cut by a power failure is completed
//     by repeating it. Stale trailer units are only cleared by erasing the erase blocks
//     that hold the trailer fields, and only when they start at or after the image's end;
//     otherwise mcuboottrailer.ErrStale and nothing is written.
//   - Confirm(primary) during a trial: write image_ok in the primary trailer
//     (boot_set_confirmed). Outside a trial it writes nothing: the running image is already
//     what MCUboot boots. Confirm(secondary) is ErrNotPrimary: MCUboot never runs it.
//   - MarkBad(secondary) with a request pending: cancel the request by erasing the secondary
//     trailer's erase blocks, under the same rule as above (else mcuboottrailer.ErrStale).
//     Without a request nothing is written: MCUboot has no bad flag and never boots the
//     secondary slot unasked. During a trial it is ErrNoFallback (secondary holds the
//     image MCUboot will revert to).
//   - MarkBad(primary) during a trial writes nothing and returns nil: MCUboot reverts at
//     the next reset unless the image confirms itself, and nothing in the trailers can make
//     that happen sooner; State still shows the trial until the reset. Outside a trial it is
//     ErrPrimaryBank (the primary slot holds the only image MCUboot boots).
type MCUboot struct {
	pri, sec mcuboottrailer.Slot
	priName  Bank
	secName  Bank
	mode     UpgradeMode
	maxAlign int
	erased   byte
}

// NewMCUboot returns an MCUboot backend over the two slots of cfg. It does not touch the
// flash.
func NewMCUboot(cfg MCUbootConfig) (*MCUboot, error) {
	m := &MCUboot{pri: cfg.Primary, sec: cfg.Secondary, priName: cfg.PrimaryName, secName: cfg.SecondaryName, mode: cfg.Mode}
	if m.priName == "" {
		m.priName = "primary"
	}
	if m.secName == "" {
		m.secName = "secondary"
	}
	for _, s := range []Bank{m.priName, m.secName} {
		if strings.ContainsAny(string(s), " \t\n=") {
			return nil, fmt.Errorf("%w: bank name %q contains a space or '='", ErrUnknownBank, s)
		}
	}
	if m.priName == m.secName {
		return nil, fmt.Errorf("%w: both MCUboot slots are named %q", ErrUnknownBank, m.priName)
	}
	mode, err := ParseUpgradeMode(string(m.mode))
	if err != nil {
		return nil, err
	}
	m.mode = mode
	if m.pri.Flash == nil || m.sec.Flash == nil {
		return nil, fmt.Errorf("%w: no flash for the primary or the secondary slot", mcuboottrailer.ErrGeometry)
	}
	pa, sa := effMaxAlign(m.pri), effMaxAlign(m.sec)
	if pa != sa || m.pri.ErasedZero != m.sec.ErasedZero {
		return nil, fmt.Errorf("%w: the primary and secondary slots disagree on max-align (%d, %d) or erased value",
			mcuboottrailer.ErrGeometry, pa, sa)
	}
	m.maxAlign = pa
	m.erased = 0xff
	if m.pri.ErasedZero {
		m.erased = 0
	}
	return m, nil
}

func effMaxAlign(s mcuboottrailer.Slot) int {
	if s.MaxAlign != 0 {
		return s.MaxAlign
	}
	return max(mcuboot.DefaultMaxAlign, s.WriteSize)
}

func (m *MCUboot) check(s Bank) error {
	return bankList{m.priName, m.secName}.check(s)
}

// trailers reads both trailers.
func (m *MCUboot) trailers() (p, s mcuboottrailer.Status, err error) {
	if p, err = mcuboottrailer.Read(m.pri); err != nil {
		return p, s, fmt.Errorf("primary slot: %w", err)
	}
	if s, err = mcuboottrailer.Read(m.sec); err != nil {
		return p, s, fmt.Errorf("secondary slot: %w", err)
	}
	return p, s, nil
}

// mcubootView is the decoded state of both trailers.
type mcubootView struct {
	p, s mcuboottrailer.Status
	swap mcuboottrailer.SwapType
	st   State
}

func (m *MCUboot) view() (mcubootView, error) {
	p, s, err := m.trailers()
	if err != nil {
		return mcubootView{}, err
	}
	v := mcubootView{p: p, s: s, swap: mcuboottrailer.Decide(p, s)}
	if p.Magic == mcuboottrailer.MagicGood && p.CopyDone == mcuboottrailer.FlagUnset && p.SwapInfo != m.erased &&
		p.SwapType >= mcuboottrailer.SwapTest && p.SwapType <= mcuboottrailer.SwapRevert {
		return v, fmt.Errorf("%w: the primary trailer shows an unfinished %s swap (copy_done unset); MCUboot completes it at the next reset",
			ErrBadState, p.SwapType)
	}
	switch v.swap {
	case mcuboottrailer.SwapTest:
		v.st = State{Primary: m.secName, Pending: m.secName, AttemptsLeft: 1, Fallback: m.priName}
	case mcuboottrailer.SwapPerm:
		v.st = State{Primary: m.secName, Pending: m.secName, AttemptsLeft: 1}
	case mcuboottrailer.SwapRevert:
		v.st = State{Primary: m.priName, Pending: m.priName, Fallback: m.secName}
	default:
		v.st = State{Primary: m.priName}
		if p.Magic == mcuboottrailer.MagicGood && p.SwapType == mcuboottrailer.SwapRevert &&
			p.CopyDone == mcuboottrailer.FlagSet && p.ImageOK == mcuboottrailer.FlagSet &&
			s.Magic == mcuboottrailer.MagicUnset {
			v.st.Bad = []Bank{m.secName}
		}
	}
	return v, nil
}

// State reads both trailers and maps the swap MCUboot would make at the next reset.
func (m *MCUboot) State() (State, error) {
	v, err := m.view()
	return v.st, err
}

// MarkPending requests the configured upgrade of the image in the secondary slot.
func (m *MCUboot) MarkPending(s Bank) error {
	if err := m.check(s); err != nil {
		return err
	}
	if s == m.priName {
		return fmt.Errorf("%w: %s is MCUboot's primary slot, which always runs; write the update into %s and mark that pending",
			ErrPrimaryBank, s, m.secName)
	}
	v, err := m.view()
	if err != nil {
		return err
	}
	if v.swap == mcuboottrailer.SwapRevert {
		return fmt.Errorf("%w: %s holds the image MCUboot reverts to while %s is on trial; confirm %s or let it revert first",
			ErrPrimaryBank, s, m.priName, m.priName)
	}
	perm := m.mode == UpgradePermanent
	sec := m.sec
	if sec.ImageEnd == 0 {
		if sec.ImageEnd, err = m.imageEnd(); err != nil {
			return err
		}
	}
	if perm && v.swap != mcuboottrailer.SwapPerm {
		// image_ok before the magic: every prefix of the transaction reads as no request
		// (magic not good) or as the permanent one, never as a test request.
		if err := m.prepareImageOK(sec, v.s); err != nil {
			return err
		}
	}
	return mcuboottrailer.RequestUpgrade(sec, perm)
}

// prepareImageOK makes the secondary trailer hold an unset magic and image_ok = 1, erasing
// the trailer first when it holds anything else (only where that is safe).
func (m *MCUboot) prepareImageOK(sec mcuboottrailer.Slot, st mcuboottrailer.Status) error {
	wantInfo := byte(sec.ImageNumber)<<4 | mcuboot.SwapTypePerm
	clean := st.Magic == mcuboottrailer.MagicUnset && st.ImageOK != mcuboottrailer.FlagBad &&
		(st.SwapInfo == m.erased || st.SwapInfo == wantInfo)
	if !clean {
		if err := m.eraseTrailer(sec, "image_ok"); err != nil {
			return err
		}
		st.ImageOK = mcuboottrailer.FlagUnset
	}
	if st.ImageOK == mcuboottrailer.FlagSet {
		return nil
	}
	l := mcuboot.Layout(m.maxAlign)
	d := bytes.Repeat([]byte{m.erased}, sec.WriteSize)
	d[0] = mcuboot.FlagSet
	off := sec.Offset + sec.Size + int64(l.ImageOK)
	cur := make([]byte, len(d))
	if _, err := sec.Flash.ReadAt(cur, off); err != nil {
		return fmt.Errorf("%w: reading image_ok at %d: %w", mcuboottrailer.ErrFlash, off, err)
	}
	if bytes.Equal(cur, d) {
		return nil
	}
	if !bytes.Equal(cur, bytes.Repeat([]byte{m.erased}, len(cur))) {
		return fmt.Errorf("%w: image_ok at %d", mcuboottrailer.ErrNotErased, off)
	}
	n, err := sec.Flash.WriteAt(d, off)
	if err == nil && n != len(d) {
		err = fmt.Errorf("short write: %d of %d bytes", n, len(d))
	}
	if err != nil {
		return fmt.Errorf("%w: writing image_ok at %d: %w", mcuboottrailer.ErrFlash, off, err)
	}
	return nil
}

// imageEnd parses the MCUboot image header and TLV areas in the secondary slot; 0 when the
// slot holds no parseable image.
func (m *MCUboot) imageEnd() (int64, error) {
	b := make([]byte, m.sec.Size)
	if _, err := io.ReadFull(io.NewSectionReader(m.sec.Flash, m.sec.Offset, m.sec.Size), b); err != nil {
		return 0, fmt.Errorf("%w: reading the secondary slot at %d: %w", mcuboottrailer.ErrFlash, m.sec.Offset, err)
	}
	if !mcuboot.IsImage(b) {
		return 0, nil
	}
	img, err := mcuboot.Parse(b)
	if err != nil {
		return 0, nil
	}
	return int64(img.End()), nil
}

// eraseTrailer erases the erase blocks of sec holding the trailer fields, if they start at
// or after sec.ImageEnd.
func (m *MCUboot) eraseTrailer(sec mcuboottrailer.Slot, why string) error {
	fields := int64(-mcuboot.Layout(m.maxAlign).SwapSize)
	es := int64(sec.EraseSize)
	if es <= 0 || sec.Size < fields {
		return fmt.Errorf("%w: slot size %d, erase size %d", mcuboottrailer.ErrGeometry, sec.Size, sec.EraseSize)
	}
	start := (sec.Size - fields) / es * es
	if sec.ImageEnd <= 0 || start < sec.ImageEnd {
		return fmt.Errorf("%w: %s of slot %s needs its trailer erased, and erasing [%d, %d) of the slot would be unsafe (image ends at %d; 0 = unknown)",
			mcuboottrailer.ErrStale, why, m.secName, start, sec.Size, sec.ImageEnd)
	}
	if err := sec.Flash.Erase(sec.Offset+start, sec.Size-start); err != nil {
		return fmt.Errorf("%w: erasing %d bytes at %d: %w", mcuboottrailer.ErrFlash, sec.Size-start, sec.Offset+start, err)
	}
	return nil
}

// Confirm writes image_ok in the primary trailer during a trial; otherwise it writes nothing.
func (m *MCUboot) Confirm(s Bank) error {
	if err := m.check(s); err != nil {
		return err
	}
	if s == m.secName {
		return fmt.Errorf("%w: MCUboot never runs the image in %s; it runs %s", ErrNotPrimary, s, m.priName)
	}
	v, err := m.view()
	if err != nil {
		return err
	}
	if v.swap != mcuboottrailer.SwapRevert {
		return nil
	}
	return mcuboottrailer.Confirm(m.pri)
}

// MarkBad cancels a pending request of the secondary slot; see the type's comment.
func (m *MCUboot) MarkBad(s Bank) error {
	if err := m.check(s); err != nil {
		return err
	}
	v, err := m.view()
	if err != nil {
		return err
	}
	if s == m.priName {
		if v.swap == mcuboottrailer.SwapRevert {
			return nil // MCUboot reverts at the next reset unless the image confirms itself.
		}
		return fmt.Errorf("%w: %s holds the only image MCUboot boots; MCUboot has no bad flag", ErrPrimaryBank, s)
	}
	switch v.swap {
	case mcuboottrailer.SwapRevert:
		return fmt.Errorf("%w: %s holds the image MCUboot reverts to", ErrNoFallback, s)
	case mcuboottrailer.SwapTest, mcuboottrailer.SwapPerm:
	default:
		return nil
	}
	sec := m.sec
	if sec.ImageEnd == 0 {
		if sec.ImageEnd, err = m.imageEnd(); err != nil {
			return err
		}
	}
	err = m.eraseTrailer(sec, "cancelling the "+v.swap.String()+" request")
	if errors.Is(err, mcuboottrailer.ErrStale) {
		return fmt.Errorf("%w; to cancel, erase the whole %s slot", err, s)
	}
	return err
}
