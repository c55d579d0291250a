// Package smp speaks mcumgr's Simple Management Protocol (SMP) to an MCU: the client side of
// the image upload, image state (test, confirm), erase, reset, echo and OS commands that
// Zephyr, Mynewt, NuttX and MCUboot's own serial recovery answer.
//
// # Scope
//
//   - Packets: the 8-byte header (operation, version 1 or 2, length, group, sequence number,
//     command) and a CBOR map (Header, EncodePacket, DecodePacket). Replies may use SMP
//     version 1 errors ({"rc": N}) or version 2 errors ({"err": {"group": G, "rc": N}}); both
//     become a *DeviceError.
//   - Transports (Transport): the serial console framing of mcumgr ("newtmgr over serial":
//     lines that start with 0x06 0x09 for a packet's first line and 0x04 0x14 for the
//     others, base64 of the packet's length, the packet and its CRC-16/XMODEM, a newline)
//     over any io.ReadWriter (Serial; OpenSerial opens a tty), and UDP (DialUDP, port 1337 by
//     default), one packet per datagram; Open opens either from an Endpoint. Lines are at
//     most 127 bytes by default (MCUboot's and Zephyr's frame limit; SerialOptions.LineSize),
//     and multi-line replies are reassembled whatever their line length.
//   - Commands (Client): Echo, Reset, Params (os group "mcumgr params"), OSInfo; ImageState,
//     Test, Confirm, Erase, SlotInfo and Upload. Upload sends "len" and "sha" on the frame at
//     offset 0 and resumes from the offset the device reports: a device that answers a frame
//     at another offset than the one it expects says where it stands, and the client goes on
//     from there.
//   - The packet size is negotiated: Client asks "mcumgr params" once and uses the device's
//     buf_size; a device that does not answer it (MCUboot's serial recovery answers rc 8,
//     not supported) gets DefaultMaxPacket, or Options.MaxPacket when set.
//
// Every request waits Options.Timeout for its reply (a frame that may erase flash, the first
// of an upload or an erase, waits Options.EraseTimeout) and is sent again up to
// Options.Retries times, with the same sequence number; replies with another sequence
// number are stale answers to earlier requests and are dropped. Reset is never sent twice:
// a second reset would make MCUboot revert a test image. A reply that cannot be decoded is
// an error that names what was wrong (ErrFrame, ErrPacket, ErrReply); a device's error code
// is a *DeviceError (ErrDevice, and ErrNotSupported for rc 8).
//
// Not covered: file system, shell, statistics, settings and log groups; multi-image uploads
// (image 0 only); Bluetooth.
package smp
