# S3 state for the dev environment. Create the bucket once (versioning and default encryption
# on, public access blocked) and put its name here; never commit a real account id.
bucket       = "conduit-terraform-state-CHANGE-ME"
key          = "conduit/dev/terraform.tfstate"
region       = "us-east-1"
encrypt      = true
use_lockfile = true
