"""install-iis.ps1: the PowerShell script that puts the .pfx to work in IIS on a Windows server.

Step 09 writes it next to certificate.pfx, for that certificate only: its thumbprint, names and
expiry are constants at the top, so the script can refuse a .pfx it was not made for. The
script cannot run here; tests/test_iis.py checks it as text and with a PowerShell parser.
"""

from __future__ import annotations

import unicodedata

from cryptography import x509

from .certs import fingerprint, ip_sans, san_names
from .errors import UsageError
from .names import count, to_unicode

SCRIPT = "install-iis.ps1"
# Windows 10 1709 / Windows Server 2019 (build 16299 on) read PBES2/AES-256 .pfx files; Windows
# Server 2016 (build 14393) and older need the legacy 3DES-SHA1 ones (09 --legacy).
FIRST_BUILD_FOR_AES = 16299
# PowerShell ends a single-quoted string at any of these, not only at the ASCII apostrophe.
_QUOTES = "'\u2018\u2019\u201a\u201b"


def ccs_file_name(name: str) -> str:
    """The file IIS's Central Certificate Store looks for: the host name, '_' for a wildcard's '*'."""
    return f"_{name[1:]}.pfx" if name.startswith("*.") else f"{name}.pfx"


def install_script(cert: x509.Certificate, *, site: str, legacy: bool, pfx_name: str) -> str:
    """The text of install-iis.ps1 for ``cert``, bound in IIS site ``site`` by default.

    ``legacy`` says how the .pfx is encrypted, so the script can stop early on a Windows that
    cannot read it. The password is not in it: the script asks, or takes a SecureString.
    """
    if not site.strip() or any(unicodedata.category(c).startswith("C") for c in site):
        raise UsageError("--iis-site needs the name of an IIS site, without control characters")
    names, addresses = san_names(cert), ip_sans(cert)
    if not names and not addresses:
        raise UsageError("cert.pem has no DNS names and no IP addresses: IIS binds by those, so there is nothing "
                         "to bind")
    width = max((len(_ps(n)) for n in names), default=0)
    name_lines = []
    for name in names:
        unicode_name = to_unicode(name)
        note = f"  # {unicode_name}" if unicode_name != name else ""
        name_lines.append(f"    {_ps(name):<{width}} = {_ps(ccs_file_name(name))}{note}")
    encryption = "3DES-SHA1 with a SHA-1 MAC" if legacy else "AES-256-CBC with a SHA-256 MAC"
    everything = names + addresses
    first = everything[0] + (f" and {count(len(everything) - 1, 'more name')}" if len(everything) > 1 else "")
    header = _HEADER.format(
        first=first,
        pfx=pfx_name,
        names="\n                    ".join(names) or "(none)",
        addresses="\n                    ".join(addresses) or "(none)",
        thumbprint=fingerprint(cert, "sha1", separator=""),  # how Windows names a certificate
        serial=f"{cert.serial_number:x}",
        not_after=f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC",
    )
    constants = _CONSTANTS.format(
        pfx=_ps(pfx_name),
        site=_ps(site),
        thumbprint=_ps(fingerprint(cert, "sha1", separator="")),
        names="\n".join(name_lines),
        addresses=", ".join(_ps(a) for a in addresses),
        not_after=_ps(f"{cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}"),
        encryption=_ps(encryption),
        build=0 if legacy else FIRST_BUILD_FOR_AES,
        build_note="any Windows reads 3DES-SHA1" if legacy else "Windows 10 1709 / Windows Server 2019",
    )
    return header + constants + _BODY


def script_bytes(text: str) -> bytes:
    """The file as Windows wants it: CRLF line ends, and UTF-8 with a byte-order mark.

    Without the BOM, Windows PowerShell 5.1 reads a script in the ANSI code page, and a site or
    host name with non-ASCII letters would arrive garbled. CRLF keeps Notepad on Windows Server
    2016 (which shows LF-only files as one line) readable.
    """
    return "\ufeff".encode("utf-8") + text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")


def _ps(text: str) -> str:
    """A PowerShell single-quoted string literal: nothing inside is expanded; quotes are doubled."""
    return "'" + "".join(c * 2 if c in _QUOTES else c for c in text) + "'"


_HEADER = """\
#Requires -Version 5.1
#Requires -PSEdition Desktop
#Requires -RunAsAdministrator
<#
.SYNOPSIS
    Installs the certificate for {first} in IIS.

.DESCRIPTION
    Written by 09_export_pkcs12.py next to {pfx}, for this one certificate:
        thumbprint  {thumbprint} (SHA-1, how Windows names certificates)
        serial      {serial}
        expires     {not_after}
        names       {names}
        addresses   {addresses}
    09 writes a new script with every new .pfx: run the one that came with the .pfx.

    Default: imports the .pfx into Cert:\\LocalMachine\\WebHosting, the store IIS keeps SNI
    certificates in, and gives every name an HTTPS binding on port 443 with SNI that uses it,
    and every IP address a binding on that address, port 443, without SNI (a client that
    connects to an address sends no server name, RFC 6066 §3). A binding that exists already
    (in any site) gets the new certificate in place of its old one; a name or address without
    one gets a new binding in -Site.

    -CentralCertStore DIR: writes the .pfx into IIS's Central Certificate Store instead, once
    per name as <name>.pfx, and gives names without a binding one that uses the store. The
    store finds certificates by the name a client asks for: IP addresses cannot use it.

    Both: the intermediate certificates go into the machine's Intermediate Certification
    Authorities store, so IIS sends the whole chain. Running the script twice does no harm.

.PARAMETER PfxPath
    The .pfx to install. Default: {pfx} next to this script.

.PARAMETER Password
    The .pfx password, as a SecureString. Asked for when not given.

.PARAMETER Site
    The IIS site that gets the bindings a name does not have yet. Default: the --iis-site
    given to 09.

.PARAMETER CentralCertStore
    The folder (or \\\\server\\share) of IIS's Central Certificate Store: install there instead
    of into the machine's certificate store.

.PARAMETER CcsPassword
    The Central Certificate Store's "Certificate Private Key Password", as a SecureString,
    when it is not the .pfx password.

.EXAMPLE
    powershell -ExecutionPolicy Bypass -File .\\install-iis.ps1

.EXAMPLE
    powershell -ExecutionPolicy Bypass -File .\\install-iis.ps1 -Site "Contoso"

.EXAMPLE
    powershell -ExecutionPolicy Bypass -File .\\install-iis.ps1 -CentralCertStore \\\\files\\IISCerts

.EXAMPLE
    # Unattended (a deploy hook), in PowerShell; the password file only Administrators can read:
    $pw = Get-Content .\\pfx-password.txt -TotalCount 1 | ConvertTo-SecureString -AsPlainText -Force
    .\\install-iis.ps1 -Password $pw
#>
"""

_CONSTANTS = """\
[CmdletBinding()]
param(
    [string]$PfxPath,
    [SecureString]$Password,
    [string]$Site = {site},
    [string]$CentralCertStore,
    [SecureString]$CcsPassword
)

# ---- The certificate this script is for (09_export_pkcs12.py wrote these from cert.pem) ----
$PfxName    = {pfx}
$Thumbprint = {thumbprint}   # SHA-1 of the certificate
$NotAfter   = {not_after}
# Every DNS name of the certificate, and its file name in a Central Certificate Store.
$Names = [ordered]@{{
{names}
}}
# Every IP address of the certificate (RFC 8738): bound by address, without SNI.
$Addresses = @({addresses})
$PfxEncryption = {encryption}
$FirstBuild    = {build}   # the oldest Windows build that reads it: {build_note}
"""

# The part that does not depend on the certificate. It only uses names defined above.
_BODY = r"""
# Binding flags (Microsoft.Web.Administration.SslFlags): SNI = 1, Central Certificate Store = 2.
$SniFlag = 1
$CcsFlag = 2

$ErrorActionPreference = 'Stop'   # any failing command stops the script, not only the last one

# ---- 1. Check everything before changing anything ------------------------------------------
if (-not $PfxPath) { $PfxPath = Join-Path $PSScriptRoot $PfxName }
if (-not (Test-Path -LiteralPath $PfxPath -PathType Leaf)) {
    throw "$PfxPath not found: copy $PfxName next to this script, or pass -PfxPath"
}
$build = [Environment]::OSVersion.Version.Build
if ($build -lt $FirstBuild) {
    throw ("This Windows (build $build) cannot read a .pfx encrypted with $PfxEncryption. " +
           'Export it again with 09_export_pkcs12.py --legacy --force')
}
$notAfterUtc = [DateTime]::Parse($NotAfter, [Globalization.CultureInfo]::InvariantCulture,
                                 [Globalization.DateTimeStyles]::AdjustToUniversal)
if ($notAfterUtc -lt [DateTime]::UtcNow) {
    throw "The certificate expired on $NotAfter. Get a new one (steps 05 to 09, or renew.sh)"
}
$inetStp = Get-ItemProperty -Path 'HKLM:\SOFTWARE\Microsoft\InetStp' -ErrorAction SilentlyContinue
if (-not $inetStp) {
    throw 'IIS is not installed here (no HKLM:\SOFTWARE\Microsoft\InetStp)'
}
$iisMajor = [int]$inetStp.MajorVersion
if ($CentralCertStore -and -not (Test-Path -LiteralPath $CentralCertStore -PathType Container)) {
    throw "Central Certificate Store folder $CentralCertStore not found"
}
if ($CentralCertStore -and $Names.Count -eq 0) {
    throw ('The Central Certificate Store finds certificates by host name, and this certificate holds IP ' +
           'addresses only: run without -CentralCertStore')
}

# IIS's configuration through Microsoft.Web.Administration's ServerManager, the API IIS Manager
# itself uses, as Get-IISServerManager of the IISAdministration module hands it out. That module
# comes with IIS 10 (Windows Server 2016 and later); its New-IISSiteBinding does not (module
# version 1.1 only), so bindings are made on the ServerManager directly.
try {
    Import-Module IISAdministration
} catch {
    throw ('The IISAdministration module is missing: it comes with IIS 10 (Windows Server 2016 and later); ' +
           'on older Windows, Install-Module IISAdministration')
}
Reset-IISServerManager -Confirm:$false   # read applicationHost.config as it is now
$manager = Get-IISServerManager

if (-not $Password) {
    $Password = Read-Host -AsSecureString -Prompt "Password of $PfxPath"
}
# Open the .pfx in memory: a wrong password, or a .pfx this script was not written for, stops
# here, before IIS is touched.
try {
    $pfx = Get-PfxData -FilePath $PfxPath -Password $Password
} catch {
    throw "Cannot open ${PfxPath} (wrong password?): $($_.Exception.Message)"
}
$leaf = @($pfx.EndEntityCertificates)[0]
if (-not $leaf -or $leaf.Thumbprint -ne $Thumbprint) {
    throw ("$PfxPath holds certificate $($leaf.Thumbprint), not ${Thumbprint}. " +
           'Run the install-iis.ps1 that 09 wrote with this .pfx')
}
Write-Host ("Installing certificate $Thumbprint (expires $NotAfter) for $($Names.Count) name(s) and " +
            "$($Addresses.Count) IP address(es)")

# ---- 2. Intermediates into the machine's Intermediate Certification Authorities store --------
# Windows builds the chain IIS sends from the machine's stores; an intermediate that only sits
# in the .pfx (or in the WebHosting store) is not used, and clients without it cached fail.
$caStore = New-Object System.Security.Cryptography.X509Certificates.X509Store('CA', 'LocalMachine')
$caStore.Open('ReadWrite')
try {
    foreach ($cert in $pfx.OtherCertificates) {
        if ($cert.Subject -eq $cert.Issuer) { continue }   # a root: trusting it is not this script's call
        if (Test-Path -LiteralPath "Cert:\LocalMachine\CA\$($cert.Thumbprint)") {
            Write-Host "  intermediate $($cert.Subject) is already in Cert:\LocalMachine\CA"
        } else {
            $caStore.Add($cert)
            Write-Host "  added intermediate $($cert.Subject) to Cert:\LocalMachine\CA"
        }
    }
} finally {
    $caStore.Close()
}

# ---- 3. The certificate itself ----------------------------------------------------------------
if ($CentralCertStore) {
    # IIS's Central Certificate Store (IIS 8 and later: the Centralized SSL Certificate Support
    # feature, enabled in IIS Manager for this folder) finds a certificate by file name: the host
    # name the client asks for (SNI) plus .pfx, with '_' for a wildcard's '*' (_.example.com.pfx);
    # a certificate with several names is stored once per name. Per Microsoft's documentation,
    # every file in the store has the same password, the "Certificate Private Key Password" set
    # in IIS Manager (Centralized Certificates, Edit Feature Settings). So each copy is encrypted
    # again with -CcsPassword, or with the .pfx password when that is the store's password. The
    # copies are 3DES-SHA1 (Export-PfxCertificate's default), which every IIS of a farm reads;
    # on a farm, run the script on each server too, for the intermediates of step 2.
    $storePassword = if ($CcsPassword) { $CcsPassword } else { $Password }
    foreach ($name in $Names.Keys) {
        $file = Join-Path $CentralCertStore $Names[$name]
        $temp = "$file.tmp"   # written beside it, then renamed: IIS never reads half a file
        $export = @{ PFXData = $pfx; FilePath = $temp; Password = $storePassword; ChainOption = 'PfxDataOnly' }
        Export-PfxCertificate @export | Out-Null
        Move-Item -LiteralPath $temp -Destination $file -Force
        Write-Host "  wrote $file"
    }
} elseif (Test-Path -LiteralPath "Cert:\LocalMachine\WebHosting\$Thumbprint") {
    Write-Host "  the certificate is already in Cert:\LocalMachine\WebHosting"
} else {
    # WebHosting is the store IIS 8 and later keep SNI certificates in. The private key is not
    # marked exportable: it stays on this machine, and the .pfx is the copy to keep.
    $import = @{ FilePath = $PfxPath; CertStoreLocation = 'Cert:\LocalMachine\WebHosting'; Password = $Password }
    Import-PfxCertificate @import | Out-Null
    Write-Host "  imported the certificate into Cert:\LocalMachine\WebHosting"
}

# ---- 4. IIS bindings: https, port 443, one per name (SNI) and one per IP address (no SNI) ------
# Through Microsoft.Web.Administration's ServerManager (see step 1). Not the older
# WebAdministration cmdlets: Get-WebBinding -HostHeader takes '*' as a wildcard pattern, so
# '*.example.com' would also find the bindings of every subdomain, and a binding's
# AddSslCertificate() fails when http.sys already holds a certificate for it, which is exactly
# the renewal case. Changing certificateHash on an existing binding is known to fail as well
# ("A specified logon session does not exist"), so a binding is replaced by a copy that names
# the new certificate. Nothing is saved until CommitChanges() at the end, which writes
# applicationHost.config and http.sys's certificate bindings together.
$idn = New-Object System.Globalization.IdnMapping

$hash = [byte[]]::new(20)   # the thumbprint as bytes, as a binding's certificateHash holds it
for ($i = 0; $i -lt 20; $i++) { $hash[$i] = [Convert]::ToByte($Thumbprint.Substring(2 * $i, 2), 16) }

function Get-UnicodeName([string]$Name) {
    # IIS Manager may store an internationalized host name as typed (bücher.example), not as the
    # certificate has it (xn--bcher-kva.example): look for both.
    $wildcard = $Name.StartsWith('*.')
    $base = if ($wildcard) { $Name.Substring(2) } else { $Name }
    try { $base = $idn.GetUnicode($base) } catch { return $Name }
    if ($wildcard) { return '*.' + $base }
    return $base
}

function Find-HttpsBinding([string]$Name) {
    # Every https binding on port 443 for this host name, in any site: a host name and port can
    # only belong to one site, so an existing binding is updated where it is.
    $hostNames = @($Name, (Get-UnicodeName $Name))
    foreach ($s in $manager.Sites) {
        foreach ($b in $s.Bindings) {
            # bindingInformation is address:port:host, e.g. *:443:www.example.com or [::1]:443:x
            if ($b.Protocol -eq 'https' -and $b.BindingInformation -match '^(.*):(\d+):(.*)$' -and
                $Matches[2] -eq '443' -and $hostNames -contains $Matches[3]) {
                [pscustomobject]@{ Site = $s; Binding = $b }
            }
        }
    }
}

function Find-AddressBinding([string]$Address) {
    # Every https binding on port 443 for this IP address with no host name, in any site. IIS
    # writes an IPv6 address in brackets, perhaps in another textual form: compared as addresses.
    $wanted = [System.Net.IPAddress]::Parse($Address)
    foreach ($s in $manager.Sites) {
        foreach ($b in $s.Bindings) {
            if ($b.Protocol -eq 'https' -and $b.BindingInformation -match '^(.*):(\d+):(.*)$' -and
                $Matches[2] -eq '443' -and $Matches[3] -eq '') {
                $bound = $null
                if ([System.Net.IPAddress]::TryParse($Matches[1].Trim('[', ']'), [ref]$bound) -and
                    $bound.Equals($wanted)) {
                    [pscustomobject]@{ Site = $s; Binding = $b }
                }
            }
        }
    }
}

# What to bind: each name on *:443:<name> with SNI; each IP address on <address>:443: without
# SNI, as a client that connects to an address sends no server name (RFC 6066 §3).
$targets = @()
foreach ($name in $Names.Keys) {
    $targets += [pscustomobject]@{ Label = $name; Info = "*:443:$name"; Sni = $true
                                   Found = @(Find-HttpsBinding $name) }
}
foreach ($address in $Addresses) {
    $bindAddress = if ($address.Contains(':')) { "[$address]" } else { $address }
    $targets += [pscustomobject]@{ Label = $address; Info = "${bindAddress}:443:"; Sni = $false
                                   Found = @(Find-AddressBinding $address) }
}

$changed = $false
$replaced = @{}   # thumbprint -> store of certificates no binding here uses any more
foreach ($t in $targets) {
    $name = $t.Label
    if ($name.StartsWith('*.') -and $iisMajor -lt 10) {
        Write-Warning "${name}: IIS $iisMajor cannot bind a wildcard host name (IIS 10 and later can). Bind it by hand."
        continue
    }
    if ($CentralCertStore -and -not $t.Sni) {
        Write-Warning ("${name}: the Central Certificate Store finds certificates by host name, and a client " +
                       'connecting to an address sends none. Run without -CentralCertStore to bind it.')
        continue
    }
    $sniWanted = if ($t.Sni) { $SniFlag } else { 0 }
    $found = @($t.Found)
    if ($found.Count -eq 0) {
        $target = $manager.Sites[$Site]
        if (-not $target) {
            $known = ($manager.Sites | ForEach-Object { $_.Name }) -join "', '"
            throw "IIS has no site named '$Site' to add the binding for $name to. Pass -Site with one of: '$known'"
        }
        if ($CentralCertStore) {
            $binding = $target.Bindings.Add($t.Info, 'https')
            $newFlags = $SniFlag -bor $CcsFlag
            $binding.SetAttributeValue('sslFlags', $newFlags)
        } elseif ($t.Sni) {
            $sni = [Microsoft.Web.Administration.SslFlags]::Sni
            $binding = $target.Bindings.Add($t.Info, $hash, 'WebHosting', $sni)
        } else {
            $binding = $target.Bindings.Add($t.Info, $hash, 'WebHosting', [Microsoft.Web.Administration.SslFlags]::None)
        }
        Write-Host "  ${name}: new binding $($t.Info) in site '$($target.Name)'$(if (-not $t.Sni) { ' (no SNI)' })"
        $changed = $true
        continue
    }
    foreach ($item in $found) {
        $old = $item.Binding
        $where = "$($old.BindingInformation) in site '$($item.Site.Name)'"
        $flags = [int]$old.GetAttributeValue('sslFlags')
        if ($CentralCertStore) {
            if ($flags -band $CcsFlag) {
                Write-Host "  ${name}: $where already uses the Central Certificate Store"
            } else {
                Write-Warning ("${name}: $where uses a certificate from a store, not the Central Certificate " +
                               'Store, and keeps it. Run without -CentralCertStore to replace it.')
            }
            continue
        }
        $current = ''
        if ($old.CertificateHash) { $current = [BitConverter]::ToString($old.CertificateHash).Replace('-', '') }
        if ($current -eq $Thumbprint -and $old.CertificateStoreName -eq 'WebHosting' -and
            ($flags -band $SniFlag) -eq $sniWanted -and -not ($flags -band $CcsFlag)) {
            Write-Host "  ${name}: $where already uses this certificate"
            continue
        }
        if ($current -and $current -ne $Thumbprint) { $replaced[$current] = $old.CertificateStoreName }
        $new = $item.Site.Bindings.CreateElement('binding')
        $new.Protocol = 'https'
        $new.BindingInformation = $old.BindingInformation
        $new.CertificateHash = $hash
        $new.CertificateStoreName = 'WebHosting'
        # SNI on for a name, off for an address; no longer the CCS
        $newFlags = ($flags -band (-bnot ($CcsFlag -bor $SniFlag))) -bor $sniWanted
        $new.SetAttributeValue('sslFlags', $newFlags)
        $item.Site.Bindings.Remove($old)
        $item.Site.Bindings.Add($new) | Out-Null
        Write-Host "  ${name}: $where now uses this certificate (was $(if ($current) { $current } else { 'none' }))"
        $changed = $true
    }
}
if ($changed) {
    $manager.CommitChanges()
    Write-Host 'Saved the bindings (applicationHost.config and http.sys).'
} else {
    Write-Host 'The bindings were already in place: nothing to change.'
}

# ---- 5. What is left to do ----------------------------------------------------------------------
foreach ($oldThumbprint in $replaced.Keys) {
    $oldStore = if ($replaced[$oldThumbprint]) { $replaced[$oldThumbprint] } else { 'My' }
    Write-Host "The previous certificate $oldThumbprint stays in Cert:\LocalMachine\$oldStore; once nothing uses it:"
    Write-Host "  Remove-Item Cert:\LocalMachine\$oldStore\$oldThumbprint"
}
$checkName = if ($Names.Count) { @($Names.Keys)[0] -replace '^\*\.', '' } else { @($Addresses)[0] }
Write-Host "Done. Check what the server sends, from any machine: 21_check_endpoint.py $checkName"
"""
