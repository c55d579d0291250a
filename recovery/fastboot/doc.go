// Package fastboot is a client of the fastboot protocol over UDP, the one U-Boot's
// `fastboot udp` speaks, so that a workstation flashes a partition of a board without a
// script: getvar, download, flash, reboot.
//
// # The UDP transport (fastboot protocol, "UDP Protocol v1")
//
// Every packet starts with a 4-byte header: a packet id (0 error, 1 query, 2 init, 3
// fastboot), a flags byte (bit 0: continuation, the data goes on in the next packet; the
// other bits are reserved, 0) and a big-endian 16-bit sequence number. The host drives:
// each host packet gets exactly one device packet back, with the same id and sequence
// number (or an error packet), and the host sends the same packet again until it does.
//
//   - Query (id 1): the device answers any query, whatever its sequence number, with the
//     next sequence number it expects (2 bytes). A host tries a few times only, so that a
//     board that is not there fails fast.
//   - Init (id 2): both sides send a protocol version and the largest packet they take
//     (header included, at least 512); the smaller packet size is used from then on.
//   - Fastboot (id 3): to write, the host sends data and the device acknowledges with an
//     empty packet; to read, the host sends an empty packet and the device answers with
//     data. A command is one write ("getvar:version"), its responses are reads: "INFO"
//     (shown, then read again), "OKAY", "FAIL" (each with a message) or "DATA%08x" (download:
//     the device takes that many bytes, written in packets of the negotiated size, then one
//     read for its verdict).
//
// # What the client checks
//
// A reply shorter than the header, with another packet id or a later sequence number than
// the packet it answers, with reserved flag bits, an error packet, a response that is no
// fastboot response, data where the device owes an empty acknowledgement: each ends the
// session with ErrProtocol and says what arrived. A reply with an earlier sequence number is
// a retransmission the device made of an answer the host already has and is skipped: U-Boot
// makes them after a long flash, during which it sends unsolicited INFO packets with the
// sequence numbers of the packets to come. A packet without an answer is sent again every
// Options.Timeout, Options.Attempts times (Options.ConnectAttempts for the first query);
// then ErrNoResponse. Messages of the device are shown with their control characters
// replaced: a hostile device does not write escape sequences into the terminal.
//
// # What flashing promises
//
// Client.Flash checks the payload's size against the device's download buffer
// (getvar:max-download-size) and, where the device tells it (getvar:partition-size), the
// partition before a byte of it is sent (ErrTooLarge). It sends the last data packet only
// after the payload reader returned io.EOF, and the flash command only after the device
// took the whole download. A payload that fails to read (a verifying reader that found a bad
// chunk or signature) ends the download (ErrAborted around the reader's error): the device
// gets an empty packet where data was due, which U-Boot answers with FAIL and leaves its
// download state, and no flash command is sent.
//
// # What U-Boot does (2023.01, net/fastboot.c)
//
// Packets of 1024 bytes; version "0.4"; max-download-size is CONFIG_FASTBOOT_BUF_SIZE as
// "0x%08x", whatever RAM there is behind the buffer (the QEMU board of
// ../shared/peers/u-boot-qemu-ota needs -m 512 for its buffer at 0x50000000); flash writes
// whole 512-byte blocks of the buffer, so a payload not a multiple of 512 is followed on the
// medium by what the buffer held after it; "mmc0" names the whole user area, other names the
// GPT partitions. Init does not end a command left pending by a host that went away: the
// first packet of the next session then runs it, which this client reports as data out of
// turn. Package fastbootsim models this behaviour for tests.
package fastboot
