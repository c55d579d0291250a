// Package publish puts an update into Azure Device Update the way a CI pipeline does it
// without the Azure CLI: check, upload, import.
//
//  1. Check reads the import manifest and the files given for it and refuses, before a byte
//     leaves the machine, a manifest that breaks the service's rules (manifestgen's
//     validator: at most 10 files, 2 GB each and in all, …), a file the manifest does not
//     name or one it names that is missing, and a file whose size or SHA-256 differs from
//     the manifest's.
//  2. Store uploads the files and the manifest to a Blob Storage container (azblob) as
//     block blobs, under PROVIDER/NAME/VERSION/, in blocks staged in parallel. An upload
//     resumes: a blob already there with the same length and the same Content-MD5 or
//     sha256 metadata (which Store sets when it commits) is not sent again, and a blob whose
//     upload was cut keeps the blocks it staged: their ids name the file's SHA-256, the
//     block size and the block's index, so only the blocks missing from the blob's
//     uncommitted block list are sent. Each block travels with its MD5, which the storage
//     service checks.
//  3. Service calls the Device Update data-plane API through azcore's pipeline (retries
//     with back-off, Retry-After on 429 and 503, request logging through azcore's log
//     package): GET of the update (an update imported before stops here, ErrUpdateExists,
//     before the upload), POST updates:import with the blobs' read URLs (SAS), and the
//     operation it answers with (Operation-Location) polled until Succeeded or Failed; a
//     Failed operation's error, with its details and inner errors, is an *OperationError.
//
// Publisher runs the three steps in that order. Credentials are azcore.TokenCredentials
// (azidentity's DefaultAzureCredential, or TokenFile for a bearer token at hand, such as
// aduhub's API token); the blob store is reached by a token credential, a SAS in the
// container URL, or a storage connection string (Azurite's development account in tests).
//
// A bearer token goes only to the endpoint it was given for: an Operation-Location on
// another host is refused (ErrForeignLocation), and plain http is allowed only to a
// loopback address (aduhub in tests), never across a network.
package publish
