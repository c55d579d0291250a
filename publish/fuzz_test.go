package publish

import (
	"encoding/json"
	"strings"
	"testing"
)

// FuzzOperation: whatever an operation answer holds, decoding it and showing its error (the
// details and inner errors, nested as deep as the JSON goes) does not panic, and the message
// names the error's code.
func FuzzOperation(f *testing.F) {
	for _, s := range []string{
		`{"operationId":"a","status":"Failed","error":{"code":"UpdateAlreadyExists","message":"m"}}`,
		`{"status":"Failed","error":{"code":"C","message":"m","details":[{"code":"D","message":"d","innererror":{"code":"E"}}],"innererror":{"code":"I","innerError":{"code":"J","errorDetail":"x"}}}}`,
		`{"status":"Succeeded","update":{"updateId":{"provider":"p","name":"n","version":"1.0"}}}`,
		`{"status":"Failed"}`, `[]`, `{"error":null}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data string) {
		var op Operation
		if json.Unmarshal([]byte(data), &op) != nil {
			return
		}
		err := &OperationError{Op: &op}
		msg := err.Error()
		if op.Error != nil && !strings.Contains(msg, op.Error.Code) {
			t.Fatalf("%q does not name the code %q", msg, op.Error.Code)
		}
		_ = err.ErrorKind()
	})
}
