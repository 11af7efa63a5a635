package qfpay

// QFPay's field limits (QFPAY.md §2) and its time layout. They are the one source for every
// part of reversald that checks a value bound for QFPay: request validation here, and the
// input-event contract in reversal, so that an event we accept is never refused by the gateway
// for its shape. String(N) fields are limits in bytes, not characters.
// (qfpay/sandbox keeps its own copies on purpose: it is an independent check of this package.)
const (
	MaxMchIDBytes      = 16  // mchid, String(16); letters and digits only
	MaxSyssnBytes      = 40  // syssn, String(40)
	MaxOutTradeNoBytes = 128 // out_trade_no, String(128)
	MaxUdidBytes       = 40  // udid, String(40)
	MaxTxAmtDigits     = 11  // txamt, Int(11): minor units
	// MaxTxAmt is the largest txamt: MaxTxAmtDigits nines.
	MaxTxAmt = 99_999_999_999
	// TxDtmLayout is the time layout of txdtm, start_time and end_time ("YYYY-MM-DD hh:mm:ss"),
	// in the merchant's local time.
	TxDtmLayout = "2006-01-02 15:04:05"
)
