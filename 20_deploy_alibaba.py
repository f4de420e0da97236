#!/usr/bin/env python3
"""Step 20: put the certificate to work on Alibaba Cloud: CAS, CDN and API Gateway.

Uploads cert.pem + chain.pem with cert.key to the Certificate Management Service (CAS,
UploadUserCertificate, API 2020-04-07) once: if CAS already holds this very certificate (same
SHA-256 fingerprint, found with ListUserCertificateOrder) its CertId is reused. Then:
  --cdn-domain NAME (repeatable)  CDN SetCdnDomainSSLCertificate (2018-05-10) with CertType=cas,
                                  the CertId and --cert-region: HTTPS on with the new certificate
  --api-gateway-group ID --api-gateway-domain NAME --region REGION
                                  API Gateway SetDomainCertificate (CloudAPI 2016-07-14) with the
                                  chain and key themselves
Requests are signed with ACS3-HMAC-SHA256 (common/alibaba.py). The AccessKey comes from the
environment only: ALIBABA_CLOUD_ACCESS_KEY_ID, ALIBABA_CLOUD_ACCESS_KEY_SECRET and, for an STS
token, ALIBABA_CLOUD_SECURITY_TOKEN. A target that fails does not stop the others; the step
then exits 1 with Alibaba's error code and message for each.

Reads:  cert.pem, chain.pem, cert.key
Writes: nothing locally; the certificate in CAS and the CDN / API Gateway HTTPS settings
"""

from common import alibaba_deploy, certs, cli
from common.cli import log


def main(args):
    api = alibaba_deploy.connect(args)
    bundle = alibaba_deploy.read_bundle(cli.work_dir(args, lock=False))
    name = alibaba_deploy.certificate_name(bundle, args.cert_name)
    about = certs.summary(bundle.leaf)

    # CAS first: CDN refers to the certificate by its CertId there.
    cert_id, known_as = alibaba_deploy.upload_once(api, bundle, name)
    if known_as is None:
        log.info("CAS: uploaded %s as CertId %s (%s)", name, cert_id, about)
    else:
        log.info("CAS: already there as %s, CertId %s: reusing it (%s)", known_as, cert_id, about)

    with alibaba_deploy.Failures() as failures:
        for domain in args.cdn_domain:
            with failures.collect():
                alibaba_deploy.set_cdn_domain_ssl_certificate(api, domain, cert_id, args.cert_region)
                log.info("CDN: %s now serves CertId %s (%s)", domain, cert_id, about)
        if args.api_gateway_group:
            with failures.collect():
                alibaba_deploy.set_domain_certificate(api, args.api_gateway_group, args.api_gateway_domain,
                                                      name, bundle)
                log.info("API Gateway: %s (group %s) now serves %s (%s)", args.api_gateway_domain,
                         args.api_gateway_group, name, about)
    served = [*args.cdn_domain, *([args.api_gateway_domain] if args.api_gateway_group else [])]
    if served:
        log.info("Next: 21_check_endpoint.py %s --wait 900 (a CDN takes minutes to serve it everywhere)", served[0])


if __name__ == "__main__":
    parser = cli.parser(__doc__, verbose="show every Alibaba Cloud API call, secrets and key material redacted")
    alibaba_deploy.add_options(parser)
    cli.run(main, parser)
