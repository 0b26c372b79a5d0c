// Command fn is the rie package's test function: the payload's "action"
// selects a behaviour the emulator must report faithfully.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
)

type request struct {
	Action string `json:"action"`
	Value  string `json:"value"`
}

func handle(ctx context.Context, r request) (any, error) {
	switch r.Action {
	case "echo":
		fmt.Fprintf(os.Stderr, "echo %s\n", r.Value)
		return map[string]string{"value": r.Value}, nil
	case "env":
		return map[string]string{"value": os.Getenv(r.Value)}, nil
	case "error":
		return nil, errors.New("asked to fail")
	case "panic":
		panic("asked to panic")
	case "exit":
		os.Exit(3)
	case "sleep":
		d, err := time.ParseDuration(r.Value)
		if err != nil {
			return nil, err
		}
		time.Sleep(d)
		return map[string]string{"slept": r.Value}, nil
	}
	return nil, fmt.Errorf("unknown action %q", r.Action)
}

func main() { lambda.Start(handle) }
