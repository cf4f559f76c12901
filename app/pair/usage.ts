/** The help of `vigil app pair` (app/pair/cli.ts), apart so `vigil app --help` needs no pairing code. */
export const PAIR_USAGE = `
Usage: vigil app pair --qr <payload | image file> [options]
       vigil app pair --invite <invite | file> [options]

Pair this companion with a Vigil hub using the QR label on the hub, or, as a
further phone, with the invite an admin phone printed (vigil app phones add).

  --qr VALUE                 the label's payload (VIGIL1:...) or an image of the label
  --invite VALUE             the invite JSON (or a file holding it): single use, 15 minutes
  --interface IF             join the hub's pairing hotspot on this Wi-Fi interface first
  --address CIDR             static address on the hotspot (default: DHCP via busybox udhcpc)
  --no-dhcp                  associate only (the address is configured elsewhere)
  --country CC               regulatory country for the Wi-Fi interface [DE]
  --hub HOST[:PORT]          the hub's frame server [10.42.0.1:7767]
  --home-ssid SSID           then send the home Wi-Fi network to the hub...
  --home-password-file FILE  ...with the password read from FILE ('-' = stdin)
  --relay URL                then meet the hub at this relay (needs --home-ssid)
  --set-relay URL            make the hub use this relay from now on (your own; https,
                             http only to loopback/link-local); also where we meet it
                             unless --relay says otherwise (needs --home-ssid)
  --set-relay-enroll-token-file FILE
                             the enrollment token that relay asks hubs for
  --dir DIR                  companion state [$VIGIL_APP_DIR or ~/.config/vigil-app]
  --timeout SECONDS          per-step timeout [60]
`;
