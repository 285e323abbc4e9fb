package wire

// ErrorBody is the body of every error answer of every Herald HTTP API, public and internal (and of a
// push-server's refused upgrade): {"error":{"code":"snake_case_code","message":"human text"}}.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is the code and message of an error answer, and of one refused item of a batch.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *ErrorDetail) Error() string { return e.Code + ": " + e.Message }

// TraceHeader carries a request's trace id from the caller through push-route to the push-servers, and
// back in push-route's answers, so one message can be followed through every log.
const TraceHeader = "X-Request-Id"
