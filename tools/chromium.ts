/** The headless Chromium the bench report and the web console tests drive (Debian's by default). */
export const chromiumPath = process.env.DCAS_CHROMIUM ?? '/usr/bin/chromium';
