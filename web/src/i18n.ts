import i18n from 'i18next';
import { initReactI18next } from 'react-i18next';
import { en } from './locales/en.ts';
import { nb } from './locales/nb.ts';
import { securityResponseEn, securityResponseNb } from './locales/security-response.ts';
import { complianceEn, complianceNb } from './locales/compliance.ts';
import { privacyEn, privacyNb } from './locales/privacy.ts';
import { securityCenterEn, securityCenterNb } from './locales/security-center.ts';

/** English and Norwegian bokmål; the person's choice is kept on this browser, else the browser's language decides. */
function initialLanguage(): 'en' | 'nb' {
  const chosen = localStorage.getItem('ringvakt.language');
  if (chosen === 'en' || chosen === 'nb') return chosen;
  return navigator.languages.some((language) => /^(nb|no|nn)\b/i.test(language)) ? 'nb' : 'en';
}

void i18n.use(initReactI18next).init({
  resources: { en: { translation: { ...en, ...privacyEn, ...securityCenterEn, ...securityResponseEn, ...complianceEn } }, nb: { translation: { ...nb, ...privacyNb, ...securityCenterNb, ...securityResponseNb, ...complianceNb } } },
  lng: initialLanguage(),
  fallbackLng: 'en',
  interpolation: { escapeValue: false }, // React escapes what it renders
  returnNull: false,
});

export default i18n;
