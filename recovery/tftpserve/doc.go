// Package tftpserve is the workstation's read-only TFTP server for recovering boards: it
// offers the files of one folder, verified, to U-Boot's tftpboot (or any TFTP client), and is
// what `aduflash serve` runs and what `aduflash recover` starts in-process.
//
// # What is served
//
// Open makes the Catalog of a folder once, at startup: every regular file in it and its
// subfolders (a symbolic link only when it stays inside the folder; anything else is listed
// as skipped) is read whole and verified, and its name, size, CRC-32 (IEEE, as U-Boot's
// crc32 prints it) and SHA-256 are recorded over the bytes that will be served:
//
//   - an aduimg image: its verified payload (signature first, every chunk decompressed and
//     checked), under the image's own file name; the size is the payload's;
//   - an MCUboot image: its bytes, once its hash and signature checked;
//   - any other file (a U-Boot script, an environment image): its bytes as they are.
//
// A signed image that does not verify, or one found without a trusted key, fails Open:
// nothing is offered that could not be checked. Files added later are not served. Opening
// and verifying a file is install.OpenPayload's, as for aduflash write and fastboot.
//
// OpenFiles makes the catalog of a list of files instead (what aduflash recover and script
// are given), each served under its base name; Options.Raw serves every file as it is.
//
// # Serving
//
// Server.Serve answers read requests (RRQ, octet mode) for names of the catalog, over
// pin/tftp/v3 (blksize up to 65464, tsize, block numbers rolling over to 0 after 65535).
// Each transfer reads its file again through the same verification as Open and pins it to
// the catalog: the SHA-256 of what is sent must equal the recorded one, and the last byte is
// held back until it does, so a client never completes a transfer whose bytes differ from
// the catalog. A chunk that fails, or a file changed since Open, ends the transfer with a
// TFTP error (code 1), never silently.
//
// Refused, each with a TFTP error and a Request for the log: write requests (code 2, access
// violation: the server is read-only), names that are absolute, hold "..", "." or empty
// elements or backslashes (code 2: no name leaves the folder; only catalog names are ever
// opened, through an os.Root), names not in the catalog (code 1), modes other than octet
// (code 4: netascii would change the bytes and their size) and malformed requests (code 4).
// The refusal names only what the client sent, never a path of this machine.
//
// The client's timeout option is not acknowledged (pin/tftp answers only blksize and tsize;
// RFC 2347 lets a server decline an option, the client then keeps its own timer): the
// server's retransmission timeout is Server.Timeout.
//
// # Exposure
//
// A transfer's replies come from a new UDP port bound to all addresses that answers only the
// requesting client (its address and port). Which addresses requests are taken on is the
// caller's listener's: aduflash serve listens on loopback unless told otherwise.
package tftpserve
