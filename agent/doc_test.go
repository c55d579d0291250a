package agent

import (
	"os"
	"regexp"
	"testing"

	"github.com/aduflash/aduflash/adu"
)

// docs/agent.md documents every extended result code of this agent; the table must match.
func TestDocumentedResultCodes(t *testing.T) {
	b, err := os.ReadFile("../docs/agent.md")
	if err != nil {
		t.Fatal(err)
	}
	codes := map[string]adu.ExtendedResultCode{
		"ERCUnsupportedHandler": ERCUnsupportedHandler, "ERCUnsupportedStep": ERCUnsupportedStep, "ERCIncompatible": ERCIncompatible,
		"ERCSlotClass": ERCSlotClass, "ERCDowngrade": ERCDowngrade, "ERCRawNotAllowed": ERCRawNotAllowed, "ERCImage": ERCImage,
		"ERCImageUnknownKey": ERCImageUnknownKey, "ERCImageSignature": ERCImageSignature, "ERCImageChunk": ERCImageChunk,
		"ERCImageTooLarge": ERCImageTooLarge, "ERCImageChunkTooLarge": ERCImageChunkTooLarge, "ERCSlot": ERCSlot, "ERCVerify": ERCVerify, "ERCBootloader": ERCBootloader,
		"ERCActiveUnknown": ERCActiveUnknown, "ERCSlotCopy": ERCSlotCopy, "ERCHealth": ERCHealth, "ERCRolledBack": ERCRolledBack, "ERCMissingFile": ERCMissingFile,
		"ERCInternal": ERCInternal, "ERCDownload": ERCDownload, "ERCDownloadTooLong": ERCDownloadTooLong,
		"ERCDownloadTruncated": ERCDownloadTruncated, "ERCDownloadChanged": ERCDownloadChanged, "ERCFileHash": ERCFileHash,
		"ERCMCUUnreachable": ERCMCUUnreachable, "ERCMCUUpload": ERCMCUUpload, "ERCMCUBoot": ERCMCUBoot, "ERCMCUHealth": ERCMCUHealth,
		"ERCMCUNotReverted": ERCMCUNotReverted,
	}
	rows := regexp.MustCompile(`(?m)^\| (ERC\w+) \| ([0-9A-F]{8}) \|`).FindAllStringSubmatch(string(b), -1)
	seen := map[string]bool{}
	for _, r := range rows {
		c, ok := codes[r[1]]
		if !ok {
			t.Errorf("docs/agent.md documents %s, which does not exist", r[1])
			continue
		}
		if c.String() != r[2] {
			t.Errorf("docs/agent.md: %s is %s, the code says %s", r[1], r[2], c)
		}
		seen[r[1]] = true
	}
	for name := range codes {
		if !seen[name] {
			t.Errorf("docs/agent.md does not document %s", name)
		}
	}
}
