package localrun

import "github.com/assumable-identity/cdk-chainguard/chainguard/truststep"

// The one-time trust step (parsing the provisioner stack's TrustCommand and
// TrustSpec outputs, creating the identity and its binding as chainctl
// does) is chainguard/truststep's, shared with the standalone emulator's
// control endpoint.
const outputTrustSpec = truststep.OutputTrustSpec
