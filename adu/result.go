package adu

import (
	"fmt"
	"strconv"
	"strings"
)

// ResultCode is lastInstallResult.resultCode (ADUC_Result, §7.1): > 0 success, ≤ 0 failure.
type ResultCode int32

const (
	ResultFailure                               ResultCode = 0
	ResultFailureCancelled                      ResultCode = -1
	ResultSuccess                               ResultCode = 1
	ResultIdleSuccess                           ResultCode = 200
	ResultDeploymentInProgressSuccess           ResultCode = 400
	ResultDownloadSuccess                       ResultCode = 500
	ResultDownloadInProgress                    ResultCode = 501
	ResultDownloadSkippedFileExists             ResultCode = 502
	ResultDownloadSkippedUpdateAlreadyInstalled ResultCode = 503
	ResultDownloadSkippedNoMatchingComponents   ResultCode = 504
	ResultDownloadHandlerSuccessSkipDownload    ResultCode = 520
	ResultDownloadHandlerRequiredFullDownload   ResultCode = 521
	ResultInstallSuccess                        ResultCode = 600
	ResultInstallInProgress                     ResultCode = 601
	ResultInstallSkippedUpdateAlreadyInstalled  ResultCode = 603
	ResultInstallSkippedNoMatchingComponents    ResultCode = 604
	ResultInstallRequiredImmediateReboot        ResultCode = 605
	ResultInstallRequiredReboot                 ResultCode = 606
	ResultInstallRequiredImmediateAgentRestart  ResultCode = 607
	ResultInstallRequiredAgentRestart           ResultCode = 608
	ResultApplySuccess                          ResultCode = 700
	ResultApplyInProgress                       ResultCode = 701
	ResultApplyRequiredImmediateReboot          ResultCode = 705
	ResultApplyRequiredReboot                   ResultCode = 706
	ResultApplyRequiredImmediateAgentRestart    ResultCode = 707
	ResultApplyRequiredAgentRestart             ResultCode = 708
	ResultCancelSuccess                         ResultCode = 800
	ResultCancelUnableToCancel                  ResultCode = 801
	ResultIsInstalledInstalled                  ResultCode = 900
	ResultIsInstalledNotInstalled               ResultCode = 901
	ResultBackupSuccess                         ResultCode = 1000
	ResultBackupSuccessUnsupported              ResultCode = 1001
	ResultBackupInProgress                      ResultCode = 1002
	ResultRestoreSuccess                        ResultCode = 1100
	ResultRestoreSuccessUnsupported             ResultCode = 1101
	ResultRestoreInProgress                     ResultCode = 1102
	ResultRestoreRequiredImmediateReboot        ResultCode = 1105
	ResultRestoreRequiredReboot                 ResultCode = 1106
	ResultRestoreRequiredImmediateAgentRestart  ResultCode = 1107
	ResultRestoreRequiredAgentRestart           ResultCode = 1108
	ResultRootKeyContinue                       ResultCode = 1200
)

// Succeeded tells whether c is a success code (> 0).
func (c ResultCode) Succeeded() bool { return c > 0 }

// ExtendedResultCode is a 32-bit extended result code (§7.2):
// facility(4) << 28 | component(8) << 20 | value(20).
type ExtendedResultCode uint32

// Facilities (§7.2).
const (
	FacilityUnknown               = 0
	FacilityLowerLayer            = 1
	FacilityUpperLayer            = 2
	FacilityUpdateContentHandler  = 3
	FacilityContentDownloader     = 4
	FacilityCommunicationProvider = 5
	FacilityLogProvider           = 6
	FacilityComponentEnumerator   = 7
	FacilityUtility               = 8
	FacilityDownloadHandler       = 9
	FacilityInfraMgmt             = 10
	FacilityDeliveryOptimization  = 13
)

// NewExtendedResultCode packs facility, component and value (value keeps its low 20 bits).
func NewExtendedResultCode(facility, component uint8, value uint32) ExtendedResultCode {
	return ExtendedResultCode(uint32(facility&0xF)<<28 | uint32(component)<<20 | value&0xFFFFF)
}

func (c ExtendedResultCode) Facility() uint8  { return uint8(c >> 28) }
func (c ExtendedResultCode) Component() uint8 { return uint8(c >> 20) }
func (c ExtendedResultCode) Value() uint32    { return uint32(c) & 0xFFFFF }

// Int32 is the code as interface ;1 reports it (signed, e.g. 0x80300001 → -2144337919).
func (c ExtendedResultCode) Int32() int32 { return int32(uint32(c)) }

// String is the code as interface ;2 reports it: 8 upper-case hex digits, no 0x.
func (c ExtendedResultCode) String() string { return fmt.Sprintf("%08X", uint32(c)) }

// Named extended result codes (§5.2, §5.5, §7.2).
const (
	ERCNone                               ExtendedResultCode = 0
	ERCManifestValidationFailed           ExtendedResultCode = 0x80300001
	ERCUnsupportedManifestVersion         ExtendedResultCode = 0x8030000A
	ERCMissingRootKeyPackageURL           ExtendedResultCode = 0x80300011
	ERCRootKeyPackageParse                ExtendedResultCode = 0xA0000001
	ERCRootKeyPackageSerialize            ExtendedResultCode = 0xA0000002
	ERCRootKeyStoreDir                    ExtendedResultCode = 0xA0000003
	ERCRootKeyBadHashAlgorithm            ExtendedResultCode = 0xA0000004
	ERCSigningKeyDisabled                 ExtendedResultCode = 0xA0000005
	ERCRootKeyProdPackageOnTestAgent      ExtendedResultCode = 0xA0000006
	ERCRootKeyTestPackageOnProdAgent      ExtendedResultCode = 0xA0000007
	ERCRootKeyPackageChanged              ExtendedResultCode = 0xA0000008
	ERCRootKeyPackageUnchanged            ExtendedResultCode = 0xA0000FFF
	ERCRootKeyUtilSignatureForKeyNotFound ExtendedResultCode = 0x80600003
	ERCRootKeyUtilSignatureInvalid        ExtendedResultCode = 0x80600004
	ERCRootKeyUtilNoRootKeyForKid         ExtendedResultCode = 0x8060000B
	ERCRootKeyUtilRootKeyDisabled         ExtendedResultCode = 0x8060000D
	ERCJWSBadStructure                    ExtendedResultCode = 0xA0200002
	ERCJWSInvalidSignature                ExtendedResultCode = 0xA0200004
	ERCJWSDisallowedRootKid               ExtendedResultCode = 0xA0200005
	ERCJWSMissingRootKid                  ExtendedResultCode = 0xA0200006
	ERCJWSInvalidRootKid                  ExtendedResultCode = 0xA0200007
	ERCJWSInvalidEncodingJWSHeader        ExtendedResultCode = 0xA0200008
	ERCJWSInvalidSJWKPayload              ExtendedResultCode = 0xA0200009
	ERCJWSFailedGetDisabledSigningKeys    ExtendedResultCode = 0xA020000B
	ERCJWSFailGenPubKey                   ExtendedResultCode = 0xA020000C
	ERCJWSHashPubKeyFailed                ExtendedResultCode = 0xA020000D
)

// FormatExtendedResultCodes renders codes as interface ;2 does: "30501028,A0000FFF"; no
// codes give "00000000".
func FormatExtendedResultCodes(codes []ExtendedResultCode) string {
	if len(codes) == 0 {
		return ERCNone.String()
	}
	s := make([]string, len(codes))
	for i, c := range codes {
		s[i] = c.String()
	}
	return strings.Join(s, ",")
}

// ParseExtendedResultCodes parses the interface ;2 string form (hex, optional 0x, any case).
func ParseExtendedResultCodes(s string) ([]ExtendedResultCode, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []ExtendedResultCode
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimPrefix(strings.TrimPrefix(strings.TrimSpace(f), "0x"), "0X")
		v, err := strconv.ParseUint(f, 16, 32)
		if err != nil {
			return nil, fmt.Errorf("adu: extended result code %q: %w", f, ErrMalformed)
		}
		out = append(out, ExtendedResultCode(v))
	}
	return out, nil
}

// InstallResult is lastInstallResult or one of its stepResults (§2.2, §7.3).
type InstallResult struct {
	ResultCode ResultCode
	// ExtendedResultCodes: root code first, then extra codes (e.g. root-key information).
	// Interface ;1 reports only the first (0 when none).
	ExtendedResultCodes []ExtendedResultCode
	ResultDetails       string
	// StepResults, one per manifest step in order, become "step_0", "step_1", …; their own
	// StepResults are ignored. NullStepResults sends "stepResults":null (clears old ones)
	// when StepResults is nil.
	StepResults     []InstallResult
	NullStepResults bool
}

// JSON renders r for the interface (or model id) iface.
func (r *InstallResult) JSON(iface string) ([]byte, error) {
	iface, err := InterfaceOf(iface)
	if err != nil {
		return nil, err
	}
	return r.render(iface, true), nil
}

func (r *InstallResult) render(iface string, top bool) []byte {
	var o ordered
	o.add("resultCode", int32(r.ResultCode))
	if iface == InterfaceV1 {
		var c ExtendedResultCode
		if len(r.ExtendedResultCodes) > 0 {
			c = r.ExtendedResultCodes[0]
		}
		o.add("extendedResultCode", c.Int32())
	} else {
		o.add("extendedResultCodes", FormatExtendedResultCodes(r.ExtendedResultCodes))
	}
	o.add("resultDetails", r.ResultDetails)
	if top {
		switch {
		case r.StepResults != nil:
			var s ordered
			for i := range r.StepResults {
				s.raw(StepKey(i), r.StepResults[i].render(iface, false))
			}
			o.raw("stepResults", s.bytes())
		case r.NullStepResults:
			o.raw("stepResults", []byte("null"))
		}
	}
	return o.bytes()
}
