package qfpay

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// DefaultTimeout bounds one call when Config.Timeout is zero.
const DefaultTimeout = 10 * time.Second

// Config configures a [Client]. Packages take it as a plain struct; the
// environment is read only in cmd/reversald.
type Config struct {
	// BaseURL of the environment, e.g. https://test-openapi-hk.qfapi.com.
	BaseURL string
	// AppCode goes in X-QF-APPCODE.
	AppCode string
	// ClientKey signs requests (and verifies responses). It redacts itself.
	ClientKey Key
	// MchID is sent when a request has none; leave empty unless QFPay issued one.
	MchID string
	// OmitMchID leaves mchid out of every request, whatever the request says:
	// for an account QFPay issued no mchid to (QFPAY.md §1). The merchant's
	// mchid still chooses the credential (see [Directory]); it is only not sent.
	OmitMchID bool
	// SignType is MD5 (default) or SHA256.
	SignType SignType
	// Timeout bounds each call, on top of the caller's context. 0 means DefaultTimeout.
	Timeout time.Duration
	// VerifyResponses checks X-QF-SIGN on responses that carry it (QFPAY.md §5).
	VerifyResponses bool
	// Routes maps pay_type to reversal or close; the zero value means DefaultRoutes().
	Routes Routes
	// HTTPClient, if set, is used instead of the client's own pooled transport
	// (which never follows redirects; set CheckRedirect likewise).
	HTTPClient *http.Client `json:"-"`
	// TracerProvider, when set, traces every call (a client span per HTTP
	// request, OpenTelemetry's otelhttp instrumentation) as a child of the
	// caller's span. No trace header is sent to QFPay, and no request header
	// is recorded: the signature and the key never reach a span. nil: none.
	TracerProvider trace.TracerProvider `json:"-"`
}

// Validate lists every problem with the configuration.
func (c Config) Validate() error {
	if err := errors.Join(c.problems()...); err != nil {
		return fmt.Errorf("qfpay config: %w", err)
	}
	return nil
}

// problems lists every problem with the configuration, one error each.
func (c Config) problems() []error {
	var errs []error
	if c.BaseURL == "" {
		errs = append(errs, errors.New("base url is required"))
	} else if u, err := url.Parse(c.BaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, errors.New("base url must be an absolute http or https url"))
	} else if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		errs = append(errs, errors.New("base url must not carry a query, fragment or user info"))
	}
	if c.AppCode == "" {
		errs = append(errs, errors.New("app code is required"))
	} else if strings.TrimSpace(c.AppCode) != c.AppCode || strings.ContainsAny(c.AppCode, "\r\n") {
		errs = append(errs, errors.New("app code has spaces or line breaks"))
	}
	if c.ClientKey.IsZero() {
		errs = append(errs, errors.New("client key is required"))
	}
	if err := checkMchID(c.MchID); err != nil {
		errs = append(errs, errors.New("mchid must be up to 16 letters and digits"))
	} else if c.OmitMchID && c.MchID != "" {
		errs = append(errs, errors.New("mchid is set but mchid is never sent (OmitMchID)"))
	}
	if !c.SignType.valid() {
		errs = append(errs, fmt.Errorf("sign type %q: must be MD5 or SHA256", string(c.SignType)))
	}
	if c.Timeout < 0 {
		errs = append(errs, errors.New("timeout must not be negative"))
	}
	if err := c.Routes.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errs
}

// LogValue prints the configuration without the key.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("base_url", c.BaseURL),
		slog.String("app_code", c.AppCode),
		slog.Any("client_key", c.ClientKey),
		slog.String("mchid", c.MchID),
		slog.Bool("send_mchid", !c.OmitMchID),
		slog.String("sign_type", string(c.signType())),
		slog.Duration("timeout", c.timeout()),
		slog.Bool("verify_responses", c.VerifyResponses),
	)
}

func (c Config) signType() SignType {
	if c.SignType == "" {
		return SignMD5
	}
	return c.SignType
}

func (c Config) timeout() time.Duration {
	if c.Timeout == 0 {
		return DefaultTimeout
	}
	return c.Timeout
}
