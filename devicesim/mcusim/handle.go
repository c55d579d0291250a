package mcusim

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/fxamacker/cbor/v2"

	"github.com/aduflash/aduflash/bootloader/mcuboottrailer"
	"github.com/aduflash/aduflash/image/mcuboot"
	"github.com/aduflash/aduflash/smp"
)

// reply is a handler's answer: a CBOR map, or an rc.
type reply = map[string]any

func rc(code int) reply { return reply{"rc": code} }

// Handle runs one SMP request packet and returns the reply packet, or nil when there is
// none (a packet that is not a request, a fault that eats the reply). A reset the request
// asked for happens before Handle returns.
func (m *MCU) Handle(pkt []byte) []byte {
	out, after := m.handle(pkt)
	if after != nil {
		after()
	}
	return out
}

// handle runs a request and returns its reply and what must happen once the reply is out.
func (m *MCU) handle(pkt []byte) ([]byte, func()) {
	m.mu.Lock()
	defer m.mu.Unlock()
	h, body, err := smp.DecodePacket(pkt)
	if err != nil || (h.Op != smp.OpRead && h.Op != smp.OpWrite) {
		return nil, nil
	}
	m.stats.Requests++
	var f Fault
	if m.cfg.Fault != nil {
		f = m.cfg.Fault(m.stats.Requests, h)
	}
	switch f.Kind {
	case FaultReset:
		m.mustReset()
		return nil, nil
	case FaultPowerCut:
		m.flash.PowerCutAfter(f.Ops)
	}
	var r reply
	if len(pkt) > m.cfg.BufSize {
		r = rc(smp.RCMsgSize)
	} else {
		r = m.dispatch(h, body)
	}
	if f.Kind == FaultPowerCut || f.Kind == FaultLostReply {
		m.mustReset()
		return nil, nil
	}
	enc, err := cbor.Marshal(r)
	if err != nil {
		enc, _ = cbor.Marshal(rc(smp.RCUnknown))
	}
	h.Op++
	after := m.after
	m.after = nil
	if after != nil {
		return smp.EncodePacket(h, enc), func() { m.mu.Lock(); defer m.mu.Unlock(); after() }
	}
	return smp.EncodePacket(h, enc), nil
}

// mustReset resets; a simulator whose reset fails is broken, not the device under test.
func (m *MCU) mustReset() {
	if err := m.reset(); err != nil {
		panic(err)
	}
}

func (m *MCU) dispatch(h smp.Header, body []byte) reply {
	type key struct {
		group uint16
		id    uint8
	}
	handlers := map[key]func([]byte) reply{
		{smp.GroupOS, smp.IDEcho}:        m.echo,
		{smp.GroupOS, smp.IDReset}:       m.resetCmd,
		{smp.GroupOS, smp.IDParams}:      m.params,
		{smp.GroupOS, smp.IDInfo}:        m.info,
		{smp.GroupImage, smp.IDState}:    func(b []byte) reply { return m.state(h.Op, b) },
		{smp.GroupImage, smp.IDUpload}:   m.upload,
		{smp.GroupImage, smp.IDErase}:    m.erase,
		{smp.GroupImage, smp.IDSlotInfo}: m.slotInfo,
	}
	fn, ok := handlers[key{h.Group, h.ID}]
	if !ok {
		return rc(smp.RCNotSupported)
	}
	r := fn(body)
	if m.flash.PoweredOff() {
		return nil
	}
	return r
}

func (m *MCU) echo(b []byte) reply {
	var req struct {
		D *string `cbor:"d"`
	}
	if cbor.Unmarshal(b, &req) != nil || req.D == nil {
		return rc(smp.RCInvalid)
	}
	return reply{"r": *req.D}
}

func (m *MCU) resetCmd([]byte) reply {
	m.after = m.mustReset
	return reply{}
}

func (m *MCU) params([]byte) reply {
	if m.cfg.NoParams {
		return rc(smp.RCNotSupported)
	}
	return reply{"buf_size": m.cfg.BufSize, "buf_count": 1}
}

func (m *MCU) info([]byte) reply {
	v := "none"
	if img, err := mcuboot.Parse(m.slotBytes(0)); err == nil {
		v = img.Header.Version.Short()
	}
	return reply{"output": "mcusim " + v + " mcuboot"}
}

func (m *MCU) slotBytes(i int) []byte {
	b, _ := m.read(m.slot(i).Offset, m.cfg.SlotSize)
	return b
}

// listed is an image in a slot as the image list shows it.
type listed struct {
	img  *mcuboot.Image
	hash []byte
}

func (m *MCU) listedImage(i int) *listed {
	img, err := mcuboot.Parse(m.slotBytes(i))
	if err != nil {
		return nil
	}
	if img.Hash() == nil {
		return nil
	}
	return &listed{img: img, hash: img.Hash()}
}

// list is the image list, with the flags Zephyr's img_mgmt derives from the swap type.
func (m *MCU) list() (reply, error) {
	swap, err := mcuboottrailer.State(m.boot.Primary, m.boot.Secondary)
	if err != nil {
		return nil, err
	}
	var images []reply
	for i := range 2 {
		l := m.listedImage(i)
		if l == nil {
			continue
		}
		e := reply{"image": 0, "slot": i, "version": l.img.Header.Version.Short(), "hash": l.hash,
			"bootable": l.img.Header.Flags&mcuboot.FlagNonBootable == 0,
			"active":   i == 0, "confirmed": false, "pending": false, "permanent": false}
		switch swap {
		case mcuboottrailer.SwapNone:
			e["confirmed"] = i == 0
		case mcuboottrailer.SwapTest, mcuboottrailer.SwapPerm:
			e["confirmed"] = i == 0
			e["pending"] = i == 1
			e["permanent"] = i == 1 && swap == mcuboottrailer.SwapPerm
		case mcuboottrailer.SwapRevert:
			e["confirmed"] = i == 1
		}
		images = append(images, e)
	}
	return reply{"images": images}, nil
}

func (m *MCU) state(op smp.Op, b []byte) reply {
	if op == smp.OpWrite {
		if r := m.setState(b); r != nil {
			return r
		}
	}
	l, err := m.list()
	if err != nil {
		return rc(smp.RCUnknown)
	}
	return l
}

// setState tests or confirms the image with the request's hash; nil when done.
func (m *MCU) setState(b []byte) reply {
	var req struct {
		Hash    []byte `cbor:"hash"`
		Confirm bool   `cbor:"confirm"`
	}
	if cbor.Unmarshal(b, &req) != nil {
		return rc(smp.RCInvalid)
	}
	slot := 0
	if req.Hash != nil {
		slot = -1
		for i := range 2 {
			if l := m.listedImage(i); l != nil && bytes.Equal(l.hash, req.Hash) {
				slot = i
			}
		}
	}
	var err error
	switch {
	case slot < 0:
		return rc(smp.RCNoEntry)
	case slot == 0 && !req.Confirm:
		return rc(smp.RCBadState)
	case slot == 0:
		err = mcuboottrailer.Confirm(m.boot.Primary)
	default:
		s := m.boot.Secondary
		s.ImageEnd = int64(m.listedImage(1).img.End())
		err = mcuboottrailer.RequestUpgrade(s, req.Confirm)
	}
	if err != nil {
		return rc(smp.RCUnknown)
	}
	return nil
}

func (m *MCU) erase(b []byte) reply {
	req := struct {
		Slot int `cbor:"slot"`
	}{Slot: 1}
	if cbor.Unmarshal(b, &req) != nil {
		return rc(smp.RCInvalid)
	}
	swap, err := mcuboottrailer.State(m.boot.Primary, m.boot.Secondary)
	switch {
	case err != nil:
		return rc(smp.RCUnknown)
	case req.Slot != 1 || swap == mcuboottrailer.SwapTest || swap == mcuboottrailer.SwapPerm:
		return rc(smp.RCBadState)
	}
	if err := errors.Join(m.closeSession(), m.flash.Erase(m.cfg.SlotSize, m.cfg.SlotSize)); err != nil {
		return rc(smp.RCUnknown)
	}
	return reply{}
}

func (m *MCU) slotInfo([]byte) reply {
	trailer, _ := mcuboot.TrailerSize(mcuboot.TrailerOptions{MaxAlign: writeSize})
	slots := []reply{{"slot": 0, "size": m.cfg.SlotSize}, {"slot": 1, "size": m.cfg.SlotSize}}
	return reply{"images": []reply{{"image": 0, "slots": slots, "max_image_size": m.cfg.SlotSize - int64(trailer)}}}
}

// upload takes one upload frame (see the package doc).
func (m *MCU) upload(b []byte) reply {
	var req struct {
		Image int    `cbor:"image"`
		Len   *int64 `cbor:"len"`
		Off   *int64 `cbor:"off"`
		Sha   []byte `cbor:"sha"`
		Data  []byte `cbor:"data"`
	}
	if cbor.Unmarshal(b, &req) != nil || req.Off == nil || req.Data == nil || req.Image != 0 || *req.Off < 0 {
		return rc(smp.RCInvalid)
	}
	off, data, s := *req.Off, req.Data, &m.session
	m.stats.Data += int64(len(data))
	if off == 0 && !bytes.Equal(req.Sha, m.ackedSha) {
		m.acked, m.ackedSha = 0, bytes.Clone(req.Sha)
	}
	m.stats.Resent += max(0, min(off+int64(len(data)), m.acked)-off)
	if off == 0 && !(s.open && s.off > 0 && req.Sha != nil && bytes.Equal(req.Sha, s.sha) && req.Len != nil && *req.Len == s.size) {
		if r := m.newUpload(req.Len, req.Sha); r != nil {
			return r
		}
	}
	switch {
	case !s.open:
		return reply{"off": 0}
	case off != s.off:
		return m.uploadReply()
	case off+int64(len(data)) > s.size:
		return rc(smp.RCInvalid)
	}
	if _, err := m.flash.WriteAt(data, m.cfg.SlotSize+off); err != nil {
		return rc(smp.RCUnknown)
	}
	if err := m.advance(off + int64(len(data))); err != nil {
		return rc(smp.RCUnknown)
	}
	return m.uploadReply()
}

// newUpload erases the secondary slot and opens a session for an image of size bytes.
func (m *MCU) newUpload(size *int64, sha []byte) reply {
	trailer, _ := mcuboot.TrailerSize(mcuboot.TrailerOptions{MaxAlign: writeSize})
	switch {
	case size == nil || *size <= 0:
		return rc(smp.RCInvalid)
	case *size > m.cfg.SlotSize-int64(trailer):
		return reply{"rc": smp.RCNoMemory, "rsn": fmt.Sprintf("image of %d bytes, the slot takes %d", *size, m.cfg.SlotSize-int64(trailer))}
	case len(sha) > 32:
		return rc(smp.RCInvalid)
	}
	swap, _ := mcuboottrailer.State(m.boot.Primary, m.boot.Secondary)
	if swap == mcuboottrailer.SwapTest || swap == mcuboottrailer.SwapPerm {
		return rc(smp.RCBadState) // the secondary image is booted next: not overwritten
	}
	if err := errors.Join(m.closeSession(), m.flash.Erase(m.cfg.SlotSize, m.cfg.SlotSize), m.openSession(*size, sha)); err != nil {
		return rc(smp.RCUnknown)
	}
	return nil
}

func (m *MCU) uploadReply() reply {
	s := m.session
	m.acked = max(m.acked, s.off)
	r := reply{"off": s.off}
	if s.off == s.size && s.sha != nil {
		ok, err := m.uploadMatches()
		if err != nil {
			return rc(smp.RCUnknown)
		}
		r["match"] = ok
	}
	return r
}
